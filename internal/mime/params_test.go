package mime

import (
	stdmime "mime"
	"testing"
)

// TestParseParamsMatchesMime: wherever the standard library parses a
// Content-Type, the lenient parser agrees with it.
func TestParseParamsMatchesMime(t *testing.T) {
	d := &Decoder{}
	for _, v := range []string{
		`text/plain; charset=us-ascii`,
		`Text/HTML; Charset="UTF-8"; format=flowed`,
		`multipart/mixed; boundary="----=_Part_5028_7368284.1115579351471"`,
		`multipart/report; report-type=delivery-status; Boundary="=====_ _= 60(15)12"`,
		`application/octet-stream; name="a;b.txt"`,
		`attachment; filename*=UTF-8''%E2%9C%93.txt`,
		`attachment; filename*0*=UTF-8''a%20; filename*1=b`,
		`text/plain; charset="us-ascii" ; format="flowed"`,
	} {
		mt, params := d.ParseParams(v)
		wantType, wantParams, err := stdmime.ParseMediaType(v)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if mt != wantType || len(params) != len(wantParams) {
			t.Errorf("%s: %q %q, mime says %q %q", v, mt, params, wantType, wantParams)
			continue
		}
		for k, w := range wantParams {
			if params[k] != w {
				t.Errorf("%s: %s=%q, mime says %q", v, k, params[k], w)
			}
		}
	}
}
