package graph_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
)

// Graph answers 429 (Retry-After: 0) to the first attempt of every
// request with a body: the retried mark-read PATCH, folder-create POST
// and move POST must carry a body that decodes as their Content-Encoding
// says, and Ack must succeed with the messages read and moved.
func TestThrottledWritesAreRetriedWithIntactBodies(t *testing.T) {
	e := newEnv(t, false)
	ids := e.deliver(3, "w")
	c := e.connector()
	ctx := context.Background()
	l, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	e.fake.ThrottleBodies(true, "0")
	e.fake.ResetRequests()
	if err := c.Ack(ctx, l.Messages[:1], mailsync.PostAction{Kind: mailsync.MarkRead}); err != nil {
		t.Fatalf("throttled mark read: %v", err)
	}
	if err := c.Ack(ctx, l.Messages[1:], mailsync.PostAction{Kind: mailsync.MoveToFolder, Folder: "Processed"}); err != nil {
		t.Fatalf("throttled move: %v", err)
	}
	for _, m := range e.fake.Messages() {
		switch m.ID {
		case ids[0]:
			if !m.IsRead || m.Folder != "Inbox" {
				t.Errorf("marked message: read=%v in %q", m.IsRead, m.Folder)
			}
		case ids[1], ids[2]:
			if m.Folder != "Processed" {
				t.Errorf("moved message %s is in %q", m.ID, m.Folder)
			}
		}
	}
	// Every write was throttled once and then served; each retry's body
	// decoded to the same JSON as the first attempt's.
	throttled, served := map[string]int{}, map[string]int{}
	for _, r := range graphRequests(e.fake) {
		if r.Method != http.MethodPatch && r.Method != http.MethodPost {
			continue
		}
		key := r.Method + " " + r.Path
		switch {
		case r.Status == http.StatusTooManyRequests:
			throttled[key]++
		case r.Status/100 == 2:
			served[key]++
			var v map[string]any
			if err := json.Unmarshal(r.Body, &v); err != nil {
				t.Errorf("%s: retried body does not decode: %q (gzip=%v)", key, r.Body, r.Gzipped)
			}
		default:
			t.Errorf("%s answered %d: body %q gzip=%v", key, r.Status, r.Body, r.Gzipped)
		}
	}
	kinds := map[string]bool{}
	for k := range throttled {
		if served[k] != 1 {
			t.Errorf("%s: throttled %d times, served %d times", k, throttled[k], served[k])
		}
		switch {
		case strings.HasSuffix(k, "/move"):
			kinds["move"] = true
		case strings.HasPrefix(k, "PATCH"):
			kinds["patch"] = true
		case strings.HasSuffix(k, "/mailFolders"):
			kinds["create"] = true
		}
	}
	if len(kinds) != 3 || len(throttled) != 4 {
		t.Fatalf("throttled writes %v, want a PATCH, a folder create and two moves", throttled)
	}
}
