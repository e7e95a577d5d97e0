package conformance_test

import (
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// keepResults copies the suite's reports and the server's log to
// conformance/results/TESTNAME/, replacing an earlier run's.
func keepResults(t *testing.T, root, results, serverLog string) {
	t.Helper()
	dst := filepath.Join(root, "conformance", "results", t.Name())
	if err := os.RemoveAll(dst); err != nil {
		t.Errorf("results: %v", err)
		return
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Errorf("results: %v", err)
		return
	}
	entries, err := os.ReadDir(results)
	if err != nil {
		t.Errorf("results: %v", err)
		return
	}
	files := []string{serverLog}
	for _, e := range entries {
		if e.Type().IsRegular() {
			files = append(files, filepath.Join(results, e.Name()))
		}
	}
	for _, f := range files {
		if err := copyFile(f, filepath.Join(dst, filepath.Base(f))); err != nil {
			t.Errorf("results: %v", err)
		}
	}
	t.Logf("reports kept in %s", dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// junitReport is the part of the suite's junit.xml the test reads: one
// testcase per check, its status, its error messages in system-out and the
// requests and responses it made in system-err.
type junitReport struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Skipped  int `xml:"skipped,attr"`
	Disabled int `xml:"disabled,attr"`
	Suites   []struct {
		Cases []junitCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type junitCase struct {
	Name     string `xml:"name,attr"`
	Status   string `xml:"status,attr"` // passed, skipped, failure or error
	Messages string `xml:"system-out"`
	Exchange string `xml:"system-err"`
}

func readJUnit(path string) (*junitReport, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep junitReport
	if err := xml.Unmarshal(raw, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rep.Tests == 0 {
		return nil, fmt.Errorf("%s counts no check", path)
	}
	return &rep, nil
}

// failed returns the checks that failed or hit an error, in run order.
func (r *junitReport) failed() []junitCase {
	return r.withStatus("failure", "error")
}

// skipped returns the checks the registry let the suite skip (an optional
// API it answered as unsupported), in run order. junit files the checks
// disabled by configuration as skipped too; those are left out.
func (r *junitReport) skipped() []junitCase {
	var out []junitCase
	for _, c := range r.withStatus("skipped") {
		if !strings.Contains(c.Messages, "disabled by user configuration") {
			out = append(out, c)
		}
	}
	return out
}

func (r *junitReport) withStatus(status ...string) []junitCase {
	var out []junitCase
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			if slices.Contains(status, c.Status) {
				out = append(out, c)
			}
		}
	}
	return out
}

// skipReport names the skipped checks with the suite's reason.
func skipReport(skipped []junitCase) string {
	var b strings.Builder
	for i, c := range skipped {
		if i == maxListed {
			fmt.Fprintf(&b, "  ... and %d more\n", len(skipped)-maxListed)
			break
		}
		fmt.Fprintf(&b, "  %s: %s\n", c.Name, firstBytes(strings.TrimSpace(c.Messages), msgBytes))
	}
	return strings.TrimRight(b.String(), "\n")
}

func (r *junitReport) counts() string {
	passed := r.Tests - r.Failures - r.Errors - r.Skipped - r.Disabled
	return fmt.Sprintf("  passed %d, failed %d, errors %d, skipped %d, disabled %d, total %d",
		passed, r.Failures, r.Errors, r.Skipped, r.Disabled, r.Tests)
}

// summaryLines returns the block of the suite's output from
// "OCI Conformance Result:" through its "Total" count.
func summaryLines(out string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "OCI Conformance Result:") {
			in = true
		}
		if !in {
			continue
		}
		b.WriteString(line + "\n")
		if strings.HasPrefix(strings.TrimSpace(line), "Total") {
			break
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// statusSections returns the suite's "API conformance:" and "Data
// conformance:" blocks.
func statusSections(out string) string {
	i := strings.Index(out, "API conformance:")
	if i < 0 {
		return "(not in the suite's output)"
	}
	return strings.TrimRight(out[i:], "\n")
}

// failureReport names the failed checks, grouped by area (the second element
// of a check's name), each with its messages; the first few also with the
// requests and responses the suite recorded.
func failureReport(rep *junitReport, failed []junitCase) string {
	byArea := map[string]int{}
	for _, c := range failed {
		byArea[area(c.Name)]++
	}
	areas := make([]string, 0, len(byArea))
	for a := range byArea {
		areas = append(areas, a)
	}
	sort.Strings(areas)
	var b strings.Builder
	fmt.Fprintf(&b, "the suite counts %d FAIL and %d Error of %d checks, in %d results; failed results by area:\n",
		rep.Failures, rep.Errors, rep.Tests, len(failed))
	for _, a := range areas {
		fmt.Fprintf(&b, "  %-40s %d\n", a, byArea[a])
	}
	for i, c := range failed {
		if i == maxListed {
			fmt.Fprintf(&b, "... and %d more (EDGE_CONFORMANCE_RESULTS=1 keeps the full report)\n", len(failed)-maxListed)
			break
		}
		fmt.Fprintf(&b, "\n%s [%s]\n%s\n", c.Name, c.Status, indent(firstBytes(strings.TrimSpace(c.Messages), msgBytes)))
		if i < maxDetailed && strings.TrimSpace(c.Exchange) != "" {
			fmt.Fprintf(&b, "  requests and responses:\n%s\n", indent(lastBytes(strings.TrimSpace(c.Exchange), detailBytes)))
		}
	}
	return b.String()
}

func area(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) < 2 {
		return name
	}
	return parts[1]
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func firstBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + " [...]"
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...] " + s[len(s)-n:]
}
