//go:build !race

package mailsync

const parseRaceEnabled = false
