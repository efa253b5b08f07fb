package fleet

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
)

// countingExecutor hands out the jobs of avail one LIMIT at a time and
// records the LIMITs it was asked for.
type countingExecutor struct {
	riverdriver.Executor
	avail  []int64
	failAt int // the call (1-based) that fails; 0: none
	limits []int
}

func (e *countingExecutor) JobGetAvailable(_ context.Context, p *riverdriver.JobGetAvailableParams) (*riverdriver.JobGetAvailableResult, error) {
	e.limits = append(e.limits, p.MaxToLock)
	if len(e.limits) == e.failAt {
		return nil, errors.New("database is locked")
	}
	r := &riverdriver.JobGetAvailableResult{}
	for len(e.avail) > 0 && len(r.Jobs) < p.MaxToLock {
		r.Jobs = append(r.Jobs, &rivertype.JobRow{ID: e.avail[0]})
		if e.avail[0] < 0 {
			r.DecodeErrors = map[int64]error{e.avail[0]: errors.New("bad args")}
		}
		e.avail = e.avail[1:]
	}
	return r, nil
}

func TestFetchOne(t *testing.T) {
	ctx := context.Background()
	ids := func(r *riverdriver.JobGetAvailableResult) []int64 {
		var out []int64
		for _, j := range r.Jobs {
			out = append(out, j.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		avail      []int64
		max        int
		failAt     int
		wantIDs    []int64
		wantLimits []int
		wantErr    bool
	}{
		{name: "four of five", avail: []int64{1, 2, 3, 4, 5}, max: 4, wantIDs: []int64{1, 2, 3, 4}, wantLimits: []int{1, 1, 1, 1}},
		{name: "queue runs dry", avail: []int64{1, 2}, max: 4, wantIDs: []int64{1, 2}, wantLimits: []int{1, 1, 1}},
		{name: "one", avail: []int64{1, 2}, max: 1, wantIDs: []int64{1}, wantLimits: []int{1}},
		{name: "decode error kept", avail: []int64{1, -2}, max: 2, wantIDs: []int64{1, -2}, wantLimits: []int{1, 1}},
		{name: "failure after a job keeps the job", avail: []int64{1, 2}, max: 3, failAt: 2, wantIDs: []int64{1}, wantLimits: []int{1, 1}},
		{name: "failure first", avail: []int64{1}, max: 3, failAt: 1, wantLimits: []int{1}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &countingExecutor{avail: tc.avail, failAt: tc.failAt}
			r, err := fetchOneExecutor{inner}.JobGetAvailable(ctx, &riverdriver.JobGetAvailableParams{MaxToLock: tc.max, Queue: "q"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if fmtInts(inner.limits) != fmtInts(tc.wantLimits) {
				t.Errorf("LIMITs %v, want %v", inner.limits, tc.wantLimits)
			}
			if err != nil {
				return
			}
			if got := ids(r); fmtInts(got) != fmtInts(tc.wantIDs) {
				t.Errorf("jobs %v, want %v", got, tc.wantIDs)
			}
			if tc.name == "decode error kept" && r.DecodeErrors[-2] == nil {
				t.Error("the decode error was dropped")
			}
		})
	}
}

func fmtInts[T int | int64](v []T) string { return fmt.Sprint(v) }

// TestFetchOneOnlyOnSQLite: River's SQLite driver is wrapped, PostgreSQL's
// is not (its planner does not re-plan on a LIMIT's value).
func TestFetchOneOnlyOnSQLite(t *testing.T) {
	if _, ok := withFetchOne(riversqlite.New(nil)).GetExecutor().(fetchOneExecutor); !ok {
		t.Error("riversqlite's driver is not wrapped")
	}
	if _, ok := withFetchOne(riverpgxv5.New(nil)).GetExecutor().(fetchOneExecutor); ok {
		t.Error("riverpgxv5's executor is wrapped")
	}
}
