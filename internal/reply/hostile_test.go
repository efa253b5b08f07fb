package reply

import (
	"strings"
	"testing"
	"time"
)

// TestHostileNestingIsLinear: HTML a hostile mail can send — hundreds of
// thousands of open elements followed by as many end tags that close
// nothing, blockquotes nested deep around many lines, <hr>s inside deep
// nesting — is split in time linear in its size by HTML and HTMLByText.
// Before, each unmatched end tag scanned every open element, each <hr>
// copied them, and each line inside n blockquotes got n "> " prefixes.
func TestHostileNestingIsLinear(t *testing.T) {
	limit := 3 * time.Second
	if raceEnabled {
		limit = 15 * time.Second
	}
	const n = 200000
	for _, c := range []struct {
		name string
		run  func() HTMLResult
	}{
		{"unmatched end tags", func() HTMLResult {
			src := `<div class="gmail_quote">` + strings.Repeat("<b>", n) + strings.Repeat("</i>", n) + "x"
			return HTML(src)
		}},
		{"hr in deep nesting", func() HTMLResult {
			src := "<p>hi</p>" + strings.Repeat("<span>", 20000) + strings.Repeat("<hr>", 20000) + `<div class="gmail_quote">q</div>`
			return HTML(src)
		}},
		{"lines in deep blockquotes", func() HTMLResult {
			src := "<p>Thanks</p>" + strings.Repeat("<blockquote>", 20000) + strings.Repeat("x<br>", 20000) +
				"<p>On Mon, 1 Nov 2023 at 09:00, A &lt;a@example.com&gt; wrote:</p>"
			return HTMLByText(src, "on_wrote:en")
		}},
		{"unmatched end tags by text", func() HTMLResult {
			src := "<p>Thanks</p>" + strings.Repeat("<b>", n) + strings.Repeat("</i>", n) +
				"<p>On Mon, 1 Nov 2023 at 09:00, A &lt;a@example.com&gt; wrote:</p><p>q</p>"
			return HTMLByText(src, "on_wrote:en")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			r := c.run()
			if took := time.Since(start); took > limit {
				t.Errorf("took %v", took)
			}
			if r.Reply == "" {
				t.Error("empty reply")
			}
		})
	}
}
