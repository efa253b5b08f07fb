package fakegmail

import (
	"strconv"
	"testing"
	"time"
)

func TestWatchAndStop(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return now }})
	defer s.Close()
	c := &client{t: t, s: s, tok: s.Token()}
	if _, ok := s.Watch(); ok {
		t.Fatal("a watch before users.watch")
	}
	code, _, out := c.do("POST", "gmail/v1/users/me/watch?alt=json&prettyPrint=false", map[string]any{
		"topicName": "projects/p1/topics/gmail", "labelIds": []string{"INBOX"}, "labelFilterBehavior": "include",
	})
	if code != 200 {
		t.Fatalf("watch: %d %v", code, out)
	}
	if out["historyId"] != strconv.FormatUint(s.HistoryID(), 10) {
		t.Errorf("historyId = %v, want %d", out["historyId"], s.HistoryID())
	}
	wantExp := now.Add(7 * 24 * time.Hour).UnixMilli()
	if out["expiration"] != strconv.FormatInt(wantExp, 10) {
		t.Errorf("expiration = %v (a string of epoch ms expected), want %d", out["expiration"], wantExp)
	}
	w, ok := s.Watch()
	if !ok || w.TopicName != "projects/p1/topics/gmail" || len(w.LabelIDs) != 1 || w.LabelIDs[0] != "INBOX" || w.LabelFilterBehavior != "include" {
		t.Fatalf("Watch() = %+v, %v", w, ok)
	}

	for _, bad := range []map[string]any{
		{"topicName": "gmail"},
		{"topicName": "projects/p1/topics/gmail", "labelIds": []string{"Label_404"}},
		{"topicName": "projects/p1/topics/gmail", "labelFilterBehavior": "sometimes"},
	} {
		if code, _, _ := c.do("POST", "gmail/v1/users/me/watch", bad); code != 400 {
			t.Errorf("watch %v: %d, want 400", bad, code)
		}
	}

	if code, _, _ := c.do("POST", "gmail/v1/users/me/stop", nil); code != 204 {
		t.Fatalf("stop: %d, want 204", code)
	}
	if _, ok := s.Watch(); ok {
		t.Error("a watch after users.stop")
	}
	if st := s.Stats(); st.ByOp["users.watch"] != 4 || st.ByOp["users.stop"] != 1 {
		t.Errorf("ByOp = %v", st.ByOp)
	}

	// A watch expires after WatchExpiry.
	c.do("POST", "gmail/v1/users/me/watch", map[string]any{"topicName": "projects/p1/topics/gmail"})
	now = now.Add(7*24*time.Hour + time.Second)
	if _, ok := s.Watch(); ok {
		t.Error("the watch outlived its expiration")
	}
}
