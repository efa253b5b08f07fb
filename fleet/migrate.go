package fleet

import (
	"context"
	"fmt"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivermigrate"
)

// Migrate brings River's tables (river_job, river_leader, …) in driver's
// database up to the version of the River this package is built with. It
// does nothing when they are current, so a host may run it at every start
// (from one process at a time). The health table is
// created by SQLHealth.Migrate.
func Migrate[TTx any](ctx context.Context, driver riverdriver.Driver[TTx]) error {
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return fmt.Errorf("mailsync/fleet: migrating River: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("mailsync/fleet: migrating River: %w", err)
	}
	return nil
}
