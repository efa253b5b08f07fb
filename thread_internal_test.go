package mailsync

import (
	"log/slog"
	"testing"
)

// TestNewThreaderReusesSubjectPattern: the threader every Sync makes does
// not compile its subject pattern again (it was a measurable part of a
// sync with nothing new), and each pattern keeps its own meaning.
func TestNewThreaderReusesSubjectPattern(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	a := newThreader(Threading{}, "u@example.com", nil, log)
	b := newThreader(Threading{}, "v@example.com", nil, log)
	if a.subjectRE != b.subjectRE {
		t.Error("the default subject pattern was compiled twice")
	}
	custom := newThreader(Threading{SubjectPattern: `\{T-(\d+)\}`}, "u@example.com", nil, log)
	if custom.subjectRE == a.subjectRE || !custom.subjectRE.MatchString("Re: printer {T-42}") || custom.subjectRE.MatchString("[#42]") {
		t.Errorf("custom pattern %q", custom.subjectRE)
	}
	allocs := testing.AllocsPerRun(50, func() { newThreader(Threading{}, "u@example.com", nil, log) })
	if allocs > 5 {
		t.Errorf("newThreader makes %.0f allocations, want at most 5 (no regexp compilation)", allocs)
	}
}
