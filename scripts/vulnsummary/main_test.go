package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// testdata/mailsync-kiota-1.5.4.json is real govulncheck v1.9.0 -json output
// for mailsync with kiota-http-go v1.5.4 and x/crypto v0.58.0 under Go
// 1.26.8, cut to one finding per vulnerability and level.
func TestRealOutputFailsOnModulesAndListsStdlib(t *testing.T) {
	f, err := os.Open("testdata/mailsync-kiota-1.5.4.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.modules) != 2 {
		t.Fatalf("module findings %+v, want kiota-http-go and x/crypto", rep.modules)
	}
	kiota, crypto := rep.modules[0], rep.modules[1]
	if kiota.id != "GO-2026-5224" || kiota.module != "github.com/microsoft/kiota-http-go" || kiota.version != "v1.5.4" ||
		kiota.fixed != "v1.5.5" || kiota.level != called {
		t.Errorf("kiota finding %+v", kiota)
	}
	if crypto.id != "GO-2026-5932" || crypto.module != "golang.org/x/crypto" || crypto.level != required {
		t.Errorf("x/crypto finding %+v", crypto)
	}
	if len(rep.stdlib) != 14 {
		t.Errorf("%d stdlib vulnerabilities, want 14", len(rep.stdlib))
	}
	ncalled := 0
	for _, v := range rep.stdlib {
		if v.level == called {
			ncalled++
		}
	}
	if ncalled != 12 {
		t.Errorf("%d stdlib vulnerabilities called, want 12", ncalled)
	}

	var out strings.Builder
	rep.write(&out)
	for _, want := range []string{
		"FAIL: 2 vulnerabilities in required modules",
		"GO-2026-5224  github.com/microsoft/kiota-http-go@v1.5.4, fixed in v1.5.5; called: github.com/microsoft/kiota-http-go.",
		"GO-2026-5932  golang.org/x/crypto@v0.58.0, fixed in v0.58.1-0.20261009181718-2f1f834330b2; required, not imported",
		"standard library of go1.26.8: 14 vulnerabilities",
		"GO-2026-6809  fixed in go1.26.10; called: crypto/x509.Certificate.Verify from ",
		"GO-2026-6604  fixed in go1.26.9; imported: os ",
		"minimum Go release with these fixes: go1.26.10\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

const config = `{"config":{"scanner_version":"v1.9.0","db":"file:///db","go_version":"go1.26.8"}}`

func TestStdlibOnlyPassesAndNamesNewestFix(t *testing.T) {
	in := config + `
{"osv":{"id":"GO-1","summary":"one"}}
{"finding":{"osv":"GO-1","fixed_version":"v1.26.10","trace":[{"module":"stdlib","version":"v1.26.8"}]}}
{"finding":{"osv":"GO-2","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http"}]}}
{"finding":{"osv":"GO-3","fixed_version":"v1.26.9","trace":[{"module":"toolchain","version":"v1.26.8","package":"cmd/go"}]}}
`
	rep, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.modules) != 0 || len(rep.stdlib) != 3 {
		t.Fatalf("modules %+v stdlib %+v", rep.modules, rep.stdlib)
	}
	var out strings.Builder
	rep.write(&out)
	for _, want := range []string{
		"required modules: no known vulnerability",
		"GO-1  fixed in go1.26.10; required, not imported  one",
		"GO-2  fixed in go1.26.9; imported: net/http",
		"minimum Go release with these fixes: go1.26.10\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestStdlibWithoutFixIsNamed(t *testing.T) {
	in := config + `
{"finding":{"osv":"GO-9","trace":[{"module":"stdlib","version":"v1.26.8"}]}}`
	rep, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.write(&out)
	if s := out.String(); !strings.Contains(s, "no Go release fixes yet: GO-9") || strings.Contains(s, "minimum Go release") {
		t.Errorf("output:\n%s", s)
	}
}

func TestClosestLevelWins(t *testing.T) {
	in := config + `
{"finding":{"osv":"GO-5","fixed_version":"v1.2.0","trace":[{"module":"example.com/m","version":"v1.1.0","package":"example.com/m/p","function":"Z"},{"module":"github.com/mailsync/mailsync","position":{"filename":"b.go","line":2}}]}}
{"finding":{"osv":"GO-5","fixed_version":"v1.2.0","trace":[{"module":"example.com/m","version":"v1.1.0"}]}}
{"finding":{"osv":"GO-5","fixed_version":"v1.2.0","trace":[{"module":"example.com/m","version":"v1.1.0","package":"example.com/m/p","function":"A","receiver":"*T"},{"module":"github.com/mailsync/mailsync","position":{"filename":"a.go","line":1}}]}}
{"finding":{"osv":"GO-5","fixed_version":"v1.2.0","trace":[{"module":"example.com/m","version":"v1.1.0","package":"example.com/m/p"}]}}`
	rep, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.modules) != 1 {
		t.Fatalf("modules %+v", rep.modules)
	}
	v := rep.modules[0]
	if v.level != called || v.symbol != "example.com/m/p.T.A" || v.from != "a.go:1" {
		t.Errorf("kept %+v, want the called finding with the smallest symbol", v)
	}
}

func TestRejectsOtherInput(t *testing.T) {
	for name, in := range map[string]string{
		"empty":        "",
		"text":         "No vulnerabilities found.\n",
		"no config":    `{"finding":{"osv":"GO-1","trace":[{"module":"stdlib"}]}}`,
		"no trace":     config + `{"finding":{"osv":"GO-1"}}`,
		"cut short":    config + `{"finding":{"osv":"GO-1","trace":[`,
		"not an array": `[1,2]`,
	} {
		if _, err := parse(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestGoReleaseAndCompare(t *testing.T) {
	for in, want := range map[string]string{
		"v1.26.10":     "go1.26.10",
		"v1.26.0":      "go1.26.0",
		"v1.27.0-rc.2": "go1.27rc2",
	} {
		if got := goRelease(in); got != want {
			t.Errorf("goRelease(%s) = %s, want %s", in, got, want)
		}
	}
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"v1.26.10", "v1.26.9", 1},
		{"v1.26.9", "v1.26.10", -1},
		{"v1.26.9", "v1.26.9", 0},
		{"v1.27.0-rc.1", "v1.27.0", -1},
		{"v1.27.0-rc.1", "v1.26.99", 1},
		{"v2.0.0", "v1.99.99", 1},
	} {
		if got := compareSemver(c.a, c.b); got != c.want {
			t.Errorf("compareSemver(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// The exit status is what CI acts on.
func TestExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	bin := t.TempDir() + "/vulnsummary"
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for name, c := range map[string]struct {
		in   string
		want int
	}{
		"stdlib only": {config + `{"finding":{"osv":"GO-1","fixed_version":"v1.26.9","trace":[{"module":"stdlib"}]}}`, 0},
		"module":      {config + `{"finding":{"osv":"GO-2","trace":[{"module":"example.com/m","version":"v1.0.0"}]}}`, 1},
		"garbage":     {"oops", 2},
	} {
		cmd := exec.Command(bin)
		cmd.Stdin = strings.NewReader(c.in)
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.want {
			t.Errorf("%s: exit %d, want %d", name, code, c.want)
		}
	}
}
