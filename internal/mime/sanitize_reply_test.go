package mime

import "testing"

// TestPolicyKeepsReplyMarks: the class names of quote and signature marks
// and blockquote type=cite survive the sanitiser; other class names and
// types do not.
func TestPolicyKeepsReplyMarks(t *testing.T) {
	for in, want := range map[string]string{
		`<div class="gmail_quote gmail_quote_container">q</div>`: `<div class="gmail_quote gmail_quote_container">q</div>`,
		`<div class="moz-cite-prefix">q</div>`:                   `<div class="moz-cite-prefix">q</div>`,
		`<blockquote type="cite">q</blockquote>`:                 `<blockquote type="cite">q</blockquote>`,
		`<div class="gmail_quote modal">q</div>`:                 `<div>q</div>`,
		`<div class="navbar">q</div>`:                            `<div>q</div>`,
		`<blockquote type="x">q</blockquote>`:                    `<blockquote>q</blockquote>`,
		`<a class="gmail_quote" href="https://x">q</a>`:          `<a href="https://x" rel="nofollow">q</a>`,
	} {
		if got := DefaultHTMLPolicy().Sanitize(in); got != want {
			t.Errorf("Sanitize(%s) = %s, want %s", in, got, want)
		}
	}
}
