//go:build race

package pop3_test

// raceEnabled: the race detector slows CPU-bound work several times.
const raceEnabled = true
