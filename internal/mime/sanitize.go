package mime

import (
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	"github.com/microcosm-cc/bluemonday/css"
)

// DefaultHTMLPolicy returns the sanitiser for the HTML of mail. It is built
// once and only read afterwards (bluemonday policies are safe for concurrent
// Sanitize calls); callers must not change it.
func DefaultHTMLPolicy() *bluemonday.Policy { return defaultHTMLPolicy }

var defaultHTMLPolicy = NewHTMLPolicy()

// NewHTMLPolicy builds the sanitiser for the HTML of mail: bluemonday's
// UGC policy with the layout attributes of mail, and CSS bounded so that a
// mail stays inside the box it is shown in.
func NewHTMLPolicy() *bluemonday.Policy {
	pol := bluemonday.UGCPolicy()
	pol.AllowURLSchemes("mailto", "http", "https", "cid")
	// Relative URLs pass the policy so that RemoteRewriter can keep a
	// relative image reference (an inline part's Content-Location) inert in
	// data-inline-location; it drops every other relative URL, which would
	// load from the helpdesk's own site.
	pol.AllowRelativeURLs(true)
	// Keep the layout of mail, not its power over the page that shows it: a
	// style attribute keeps only these properties, each value checked by
	// bluemonday's CSS handler for it and, for lengths, by cssBounds.
	// position, top/left, z-index, opacity, visibility, transform, float and
	// viewport units are dropped, and margins, indents and offsets cannot be
	// negative or huge, so a mail stays inside the box it is shown in and
	// cannot lay a fake dialog over the helpdesk UI. (AllowAttrs("style")
	// alone would pass any CSS through.) The only url() kept is a
	// background-image's, which the remote content pass (RemoteRewriter)
	// blocks unless allowed (RemoteRewriter.Allow).
	pol.AllowAttrs("style").Globally()
	for _, prop := range safeStyleProperties {
		pol.AllowStyles(prop).MatchingHandler(styleHandler(prop)).Globally()
	}
	pol.AllowStyles("background-image").MatchingHandler(func(v string) bool {
		return v == "none" || cssImageURL.MatchString(v)
	}).Globally()
	pol.AllowElements("center", "font")
	pol.AllowAttrs("color", "face", "size").OnElements("font")
	pol.AllowAttrs("bgcolor", "align", "valign", "width", "height", "border", "cellpadding", "cellspacing").Globally()
	// Image sources beyond img src; RemoteRewriter checks their URLs.
	pol.AllowAttrs("srcset").OnElements("img")
	pol.AllowAttrs("background").OnElements("table", "tr", "td", "th")
	// The marks mail clients put on quoted history and signatures, which
	// reply segmentation (internal/reply) reads in the sanitised HTML:
	// only these class names pass (a class attribute with any other name
	// is dropped as before, so a mail cannot borrow the host page's
	// classes), and blockquote type="cite".
	pol.AllowAttrs("class").Matching(replyClasses).OnElements("div", "blockquote", "span", "pre", "p")
	pol.AllowAttrs("type").Matching(regexp.MustCompile(`^(?i)cite$`)).OnElements("blockquote")
	return pol
}

// replyClasses matches a class attribute made only of the class names
// mail clients mark quoted history and signatures with.
var replyClasses = regexp.MustCompile(`^\s*(?:(?:gmail_quote|gmail_quote_container|gmail_attr|gmail_extra|gmail_signature|gmail_signature_prefix|moz-cite-prefix|moz-signature|moz-forward-container|yahoo_quoted|protonmail_quote|protonmail_signature_block)\s*)+$`)

// cssImageURL is the one url() form kept in a style attribute (checked on
// bluemonday's lower-cased, unescaped value): an http, https or cid URL
// without quotes, parentheses, backslashes or white space inside.
var cssImageURL = regexp.MustCompile(`^url\(\s*(["']?)(https?://|cid:)[^"'()\\\s]+["']?\s*\)$`)

// safeStyleProperties are the CSS properties kept in style attributes.
var safeStyleProperties = []string{
	"color", "background-color",
	"font", "font-family", "font-size", "font-style", "font-weight", "font-variant",
	"text-align", "text-decoration", "text-indent", "text-transform", "letter-spacing", "word-spacing",
	"line-height", "white-space", "vertical-align", "direction", "list-style-type",
	"margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
	"padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
	"border", "border-top", "border-right", "border-bottom", "border-left",
	"border-color", "border-style", "border-width", "border-collapse", "border-spacing", "border-radius",
	"width", "height", "min-width", "max-width", "min-height", "max-height",
	"display", "table-layout",
}

// cssBound limits the lengths of one CSS property: from minPx to maxPx
// pixels (absolute units and em/rem/ex/ch converted at 16px a em),
// percentages up to maxPct. Unitless numbers other than 0 are pixels, or
// multiples of 16px for line-height (unitless "mult"), or ignored in the font
// shorthand, where they are weights and line-heights ("ignore").
type cssBound struct {
	minPx, maxPx, maxPct float64
	unitless             string
}

// cssBounds keep a mail inside its box: no negative margin or indent pulls
// it out, no huge size, padding, font or offset covers the page around it.
var cssBounds = func() map[string]cssBound {
	b := map[string]cssBound{
		"width": {0, 2000, 100, ""}, "height": {0, 2000, 100, ""},
		"min-width": {0, 2000, 100, ""}, "max-width": {0, 2000, 100, ""},
		"min-height": {0, 2000, 100, ""}, "max-height": {0, 2000, 100, ""},
		"font-size": {0, 100, 400, ""}, "font": {0, 100, 400, "ignore"},
		"line-height": {0, 200, 500, "mult"}, "text-indent": {0, 200, 50, ""},
		"letter-spacing": {-10, 50, 0, ""}, "word-spacing": {-10, 50, 0, ""},
		"vertical-align": {-50, 50, 100, ""},
		"border-width":   {0, 20, 0, ""}, "border-spacing": {0, 50, 0, ""}, "border-radius": {0, 200, 50, ""},
	}
	for _, side := range []string{"", "-top", "-right", "-bottom", "-left"} {
		b["margin"+side] = cssBound{0, 200, 50, ""}
		b["padding"+side] = cssBound{0, 200, 50, ""}
		b["border"+side] = cssBound{0, 20, 0, ""}
	}
	return b
}()

// cssUnitPx converts CSS length units to pixels; viewport units (vw, vh,
// vmin, …) are absent on purpose: they measure the page, not the mail's box.
var cssUnitPx = map[string]float64{
	"px": 1, "pt": 4.0 / 3, "pc": 16, "in": 96, "cm": 96 / 2.54, "mm": 96 / 25.4, "q": 96 / 101.6,
	"em": 16, "rem": 16, "ex": 8, "ch": 8,
}

// styleHandler checks a property's value with bluemonday's handler for it,
// then its lengths against cssBounds.
func styleHandler(prop string) func(string) bool {
	def := css.GetDefaultHandler(prop)
	bound, ok := cssBounds[prop]
	if !ok {
		return def
	}
	return func(v string) bool { return def(v) && cssLengthsWithin(v, bound) }
}

// cssLengthsWithin reports whether every length in a (lower-case) CSS value
// is within b. Functions other than colours (calc(), var(), …) fail.
func cssLengthsWithin(v string, b cssBound) bool {
	depth := 0
	for _, tok := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == '/' }) {
		if depth > 0 || strings.Contains(tok, "(") {
			name, _, _ := strings.Cut(tok, "(")
			if depth == 0 && name != "rgb" && name != "rgba" && name != "hsl" && name != "hsla" {
				return false
			}
			depth += strings.Count(tok, "(") - strings.Count(tok, ")")
			continue
		}
		if tok == "" || !strings.ContainsRune("0123456789.+-", rune(tok[0])) {
			continue // a keyword (auto, solid, bold, red, …)
		}
		i := 0
		for i < len(tok) && strings.ContainsRune("0123456789.+-e", rune(tok[i])) && !(tok[i] == 'e' && (i+1 >= len(tok) || !strings.ContainsRune("0123456789+-", rune(tok[i+1])))) {
			i++
		}
		n, err := strconv.ParseFloat(tok[:i], 64)
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
			return false
		}
		unit := tok[i:]
		var px float64
		switch f, ok := cssUnitPx[unit]; {
		case unit == "%":
			if n < 0 && b.minPx >= 0 || n > b.maxPct || n < -b.maxPct {
				return false
			}
			continue
		case ok:
			px = n * f
		case unit != "":
			return false // vw, vh, deg, an unknown unit
		case n == 0 || b.unitless == "ignore":
			continue
		case b.unitless == "mult":
			px = n * 16
		default:
			px = n
		}
		if px < b.minPx || px > b.maxPx {
			return false
		}
	}
	return depth == 0
}
