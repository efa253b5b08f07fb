//go:build race

package mime

// raceEnabled is true under the race detector, which slows the decoder
// down several times: timing tests allow for it.
const raceEnabled = true
