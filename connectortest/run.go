package connectortest

import "testing"

// Run runs the conformance suite against the harnesses newHarness makes.
func Run(t *testing.T, newHarness HarnessMaker) {
	t.Helper()
	t.Skip("connectortest: suite under construction")
}
