package main

import "testing"

func TestRunOnSample(t *testing.T) {
	if err := run("", ""); err != nil {
		t.Fatal(err)
	}
}
