//go:build race

package gmail_test

// raceEnabled is true under the race detector, where the slowest tests
// (which the rest of the suite covers piecemeal) are skipped.
const raceEnabled = true
