//go:build race

package mailsync

// parseRaceEnabled is true under the race detector, which slows the parser
// down several times: timing tests allow for it.
const parseRaceEnabled = true
