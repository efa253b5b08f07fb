//go:build !race

package mime

const raceEnabled = false
