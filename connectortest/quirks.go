package connectortest

// FetchMarksReader is an optional interface of a Harness. A harness whose
// server marks a message read when the connector downloads it returns
// true from FetchMarksRead: some POP3 servers set the \Seen flag on RETR
// (Courier; Dovecot unless pop3_no_flag_updates is set), so the
// LeaveUntouched post-action cannot keep mail unread there. The
// PostActions test then accepts a read flag on untouched messages and
// reports it with t.Log instead of failing.
type FetchMarksReader interface {
	FetchMarksRead() bool
}

// fetchMarksRead reports whether h declares that fetching marks mail read.
func fetchMarksRead(h Harness) bool {
	f, ok := h.(FetchMarksReader)
	return ok && f.FetchMarksRead()
}
