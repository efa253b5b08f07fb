//go:build !race

package gmail_test

const raceEnabled = false
