// Command vulnsummary reads the output of `govulncheck -json` on standard
// input, prints one line per vulnerability and decides what CI makes of it
// (scripts/vulncheck.sh runs it):
//
//   - a finding in any module mailsync requires fails the run, whether the
//     vulnerable code is called, only imported, or only in a required module;
//   - a finding in the standard library (or the Go toolchain) is printed with
//     the Go release that fixes it, and does not fail: the host picks its Go
//     toolchain. The newest of those releases is printed as the minimum Go
//     release that has every fix.
//
// Exit status: 0 no finding in a required module, 1 at least one, 2 the
// input is not govulncheck -json output.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	rep, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulnsummary:", err)
		os.Exit(2)
	}
	rep.write(os.Stdout)
	if len(rep.modules) > 0 {
		os.Exit(1)
	}
}

// The parts of govulncheck's JSON protocol (golang.org/x/vuln/internal/govulncheck,
// protocol v1.0.0) that are read here; each stream message holds one of them.
type message struct {
	Config *struct {
		ScannerVersion string `json:"scanner_version"`
		DB             string `json:"db"`
		GoVersion      string `json:"go_version"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *finding `json:"finding"`
}

type finding struct {
	OSV          string  `json:"osv"`
	FixedVersion string  `json:"fixed_version"`
	Trace        []frame `json:"trace"`
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

// level is how close a finding comes to mailsync's code; govulncheck
// reports the same vulnerability once per level it reaches.
type level int

const (
	required level = iota // the module is in the build list
	imported              // a vulnerable package is imported
	called                // a vulnerable symbol is reachable
)

func (l level) String() string {
	return [...]string{"required", "imported", "called"}[l]
}

// vuln is one vulnerability in one module, at the closest level reported.
type vuln struct {
	id, module, version, fixed, summary string
	level                               level
	symbol                              string // vulnerable package or symbol, at imported/called
	from                                string // mailsync's file:line that reaches it, at called
}

type report struct {
	scanner, goVersion, db string
	modules, stdlib        []vuln // sorted by id
}

func isGo(module string) bool { return module == "stdlib" || module == "toolchain" }

// parse reads a govulncheck -json stream.
func parse(r io.Reader) (*report, error) {
	dec := json.NewDecoder(r)
	rep := &report{}
	seenConfig := false
	summaries := map[string]string{}
	byKey := map[string]*vuln{}
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading govulncheck -json output: %w", err)
		}
		switch {
		case m.Config != nil:
			seenConfig = true
			rep.scanner, rep.goVersion, rep.db = m.Config.ScannerVersion, m.Config.GoVersion, m.Config.DB
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil:
			f := m.Finding
			if len(f.Trace) == 0 || f.OSV == "" {
				return nil, fmt.Errorf("finding without an OSV id or a trace: %+v", *f)
			}
			top := f.Trace[0]
			v := vuln{id: f.OSV, module: top.Module, version: top.Version, fixed: f.FixedVersion}
			switch {
			case top.Function != "":
				v.level = called
				v.symbol = symbol(top)
				if last := f.Trace[len(f.Trace)-1]; last.Position != nil {
					v.from = fmt.Sprintf("%s:%d", last.Position.Filename, last.Position.Line)
				}
			case top.Package != "":
				v.level = imported
				v.symbol = top.Package
			}
			key := v.id + " " + v.module
			old, ok := byKey[key]
			// Keep the closest level; within it the smallest symbol, so the
			// output does not depend on the order of govulncheck's stream.
			if !ok || v.level > old.level || v.level == old.level && v.symbol+v.from < old.symbol+old.from {
				byKey[key] = &v
			}
		}
	}
	if !seenConfig {
		return nil, errors.New("no config message: not govulncheck -json output")
	}
	for _, v := range byKey {
		v.summary = summaries[v.id]
		if isGo(v.module) {
			rep.stdlib = append(rep.stdlib, *v)
		} else {
			rep.modules = append(rep.modules, *v)
		}
	}
	for _, vs := range [][]vuln{rep.modules, rep.stdlib} {
		sort.Slice(vs, func(i, j int) bool {
			if vs[i].id != vs[j].id {
				return vs[i].id < vs[j].id
			}
			return vs[i].module < vs[j].module
		})
	}
	return rep, nil
}

func symbol(f frame) string {
	if f.Receiver != "" {
		return fmt.Sprintf("%s.%s.%s", f.Package, strings.TrimPrefix(f.Receiver, "*"), f.Function)
	}
	return f.Package + "." + f.Function
}

func (rep *report) write(w io.Writer) {
	fmt.Fprintf(w, "govulncheck %s with %s, database %s\n", rep.scanner, rep.goVersion, rep.db)
	if len(rep.modules) == 0 {
		fmt.Fprintln(w, "required modules: no known vulnerability")
	} else {
		fmt.Fprintf(w, "FAIL: %d vulnerabilities in required modules (upgrade them):\n", len(rep.modules))
		for _, v := range rep.modules {
			fixed := "no fixed version yet"
			if v.fixed != "" {
				fixed = "fixed in " + v.fixed
			}
			fmt.Fprintf(w, "  %s  %s@%s, %s; %s  %s\n", v.id, v.module, v.version, fixed, where(v), v.summary)
		}
	}
	if len(rep.stdlib) == 0 {
		fmt.Fprintf(w, "standard library: no known vulnerability in %s\n", rep.goVersion)
		return
	}
	fmt.Fprintf(w, "standard library of %s: %d vulnerabilities (not failing: the host picks its Go release):\n", rep.goVersion, len(rep.stdlib))
	var newest string
	var unfixed []string
	for _, v := range rep.stdlib {
		fixed := "no fixed Go release yet"
		if v.fixed != "" {
			fixed = "fixed in " + goRelease(v.fixed)
			if newest == "" || compareSemver(v.fixed, newest) > 0 {
				newest = v.fixed
			}
		} else {
			unfixed = append(unfixed, v.id)
		}
		fmt.Fprintf(w, "  %s  %s; %s  %s\n", v.id, fixed, where(v), v.summary)
	}
	if newest != "" {
		fmt.Fprintf(w, "minimum Go release with these fixes: %s\n", goRelease(newest))
	}
	if len(unfixed) > 0 {
		fmt.Fprintf(w, "no Go release fixes yet: %s\n", strings.Join(unfixed, ", "))
	}
}

func where(v vuln) string {
	switch {
	case v.level == called && v.from != "":
		return fmt.Sprintf("called: %s from %s", v.symbol, v.from)
	case v.symbol != "":
		return fmt.Sprintf("%s: %s", v.level, v.symbol)
	}
	return v.level.String() + ", not imported"
}

// goRelease turns govulncheck's semver for a Go release into Go's own
// spelling: v1.26.10 → go1.26.10, v1.27.0-rc.2 → go1.27rc2.
func goRelease(semver string) string {
	s := strings.TrimPrefix(semver, "v")
	if i := strings.IndexByte(s, '-'); i >= 0 {
		base, pre := s[:i], strings.ReplaceAll(s[i+1:], ".", "")
		return "go" + strings.TrimSuffix(base, ".0") + pre
	}
	return "go" + s
}

// compareSemver compares vMAJOR.MINOR.PATCH[-PRE] versions numerically
// (a prerelease sorts before its release), as Go releases need: lexically
// v1.26.9 > v1.26.10.
func compareSemver(a, b string) int {
	pa, prea := splitSemver(a)
	pb, preb := splitSemver(b)
	for i := range pa {
		if pa[i] != pb[i] {
			if pa[i] < pb[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case prea == preb:
		return 0
	case prea == "":
		return 1
	case preb == "":
		return -1
	case prea < preb:
		return -1
	}
	return 1
}

func splitSemver(v string) (nums [3]int, pre string) {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexByte(v, '-'); i >= 0 {
		v, pre = v[:i], v[i+1:]
	}
	for i, p := range strings.SplitN(v, ".", 3) {
		nums[i], _ = strconv.Atoi(p)
	}
	return nums, pre
}
