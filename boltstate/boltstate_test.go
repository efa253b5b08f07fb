package boltstate_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
	"github.com/mailsync/mailsync/boltstate"
)

func TestStoreSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstate.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cur := mailsync.Cursor("v1:7:42")
	if err := s.Record(ctx, "a", mailsync.Record{Done: map[string]string{"k1": "T1", "k2": ""}, Cursor: &cur, Threads: map[string]string{"m1@x": "T1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, "b", mailsync.Record{Done: map[string]string{"k1": "T9"}}); err != nil {
		t.Fatal(err)
	}
	if err := mailsync.RegisterOutgoing(ctx, s, "<out@helpdesk>", "T1"); err != nil {
		t.Fatal(err)
	}
	// A second opener is refused while the file is in use.
	if _, err := boltstate.Open(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v", err)
	}
	s.Close()

	s, err = boltstate.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, _ := s.Cursor(ctx, "a"); c != cur {
		t.Errorf("cursor %q", c)
	}
	if c, _ := s.Cursor(ctx, "b"); c != "" {
		t.Errorf("b has cursor %q", c)
	}
	got, _ := s.Processed(ctx, "a", []string{"k1", "k2", "k3"})
	if !slices.Equal(got, []bool{true, true, false}) {
		t.Errorf("processed %v", got)
	}
	th, _ := s.Threads(ctx, []string{"m1@x", "out@helpdesk", "nope"})
	if th["m1@x"] != "T1" || th["out@helpdesk"] != "T1" || len(th) != 2 {
		t.Errorf("threads %v", th)
	}
	if err := s.Prune(ctx, "a", []string{"k2"}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Processed(ctx, "a", []string{"k1", "k2"})
	if !slices.Equal(got, []bool{false, true}) {
		t.Errorf("after prune %v", got)
	}
	if n, _ := s.ProcessedCount("b"); n != 1 {
		t.Errorf("pruning a touched b: %d", n)
	}
}
