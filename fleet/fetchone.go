package fleet

import (
	"context"

	"github.com/riverqueue/river/riverdriver"
)

// SQLite prepares a statement again when a bound value it planned with
// changes, and its planner reads the value bound to a LIMIT
// (sqlite3ExprIsInteger, unless SQLITE_DBCONFIG_ENABLE_QPSG is set, which
// modernc.org/sqlite offers no way to set). River's fetch,
// riversqlite's JobGetAvailable, binds the number of free worker slots to
// its LIMIT, which changes from one fetch to the next while a fleet is
// busy; each change re-prepared the statement, a large UPDATE … RETURNING
// that costs several times what running it does (a quarter of River's
// fetch CPU, 0.24 ms a sync, in scripts/bench-fleet.sh's profile).
// sqliteFetchOne makes every fetch bind the same LIMIT, 1, by fetching n
// jobs as up to n fetches of one.

// sqliteFetchOne wraps River's SQLite driver so that JobGetAvailable
// always binds LIMIT 1; everything else is the driver's.
type sqliteFetchOne[TTx any] struct {
	riverdriver.Driver[TTx]
}

// GetExecutor returns the driver's executor with fetchOneExecutor's
// JobGetAvailable.
func (d sqliteFetchOne[TTx]) GetExecutor() riverdriver.Executor {
	return fetchOneExecutor{d.Driver.GetExecutor()}
}

// fetchOneExecutor fetches up to MaxToLock jobs one at a time.
type fetchOneExecutor struct {
	riverdriver.Executor
}

// JobGetAvailable locks up to params.MaxToLock jobs by fetching one job at
// a time, until it has them or the queue has no more. The jobs it locked
// before a fetch failed are returned without the error, since they are
// already running: dropping them would leave them to the rescuer; the
// failure shows again on River's next fetch.
func (e fetchOneExecutor) JobGetAvailable(ctx context.Context, params *riverdriver.JobGetAvailableParams) (*riverdriver.JobGetAvailableResult, error) {
	if params.MaxToLock <= 1 {
		return e.Executor.JobGetAvailable(ctx, params)
	}
	one := *params
	one.MaxToLock = 1
	var all riverdriver.JobGetAvailableResult
	for range params.MaxToLock {
		r, err := e.Executor.JobGetAvailable(ctx, &one)
		if err != nil {
			if len(all.Jobs) == 0 {
				return nil, err
			}
			break
		}
		if r == nil || len(r.Jobs) == 0 {
			break
		}
		all.Jobs = append(all.Jobs, r.Jobs...)
		for id, derr := range r.DecodeErrors {
			if all.DecodeErrors == nil {
				all.DecodeErrors = make(map[int64]error)
			}
			all.DecodeErrors[id] = derr
		}
	}
	return &all, nil
}

// withFetchOne returns driver wrapped in sqliteFetchOne when it is River's
// SQLite driver, driver itself otherwise.
func withFetchOne[TTx any](driver riverdriver.Driver[TTx]) riverdriver.Driver[TTx] {
	if driver.DatabaseName() != riverdriver.DatabaseNameSQLite {
		return driver
	}
	return sqliteFetchOne[TTx]{driver}
}
