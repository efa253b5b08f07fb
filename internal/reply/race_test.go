//go:build race

package reply

// raceEnabled is true under the race detector, which slows the scans
// down several times: timing tests allow for it.
const raceEnabled = true
