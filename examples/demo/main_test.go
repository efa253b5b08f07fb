package main

import "testing"

// TestDemo runs the demo end to end: it fails when the second sync
// duplicates anything or any step errors.
func TestDemo(t *testing.T) {
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
