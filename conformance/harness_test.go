package conformance_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The harness's parsers, on lines and reports in the shapes the reference
// registry and the suite write (nodetest reads the node's lines).

func TestAddressLines(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, line, want string }{
		{"registry", `time="2026-11-22T16:00:00Z" level=info msg="listening on 127.0.0.1:5001" go.version=go1.26`, "127.0.0.1:5001"},
		{"registry other", `time="2026-11-22T16:00:00Z" level=info msg="redis not configured"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := registryAddr(tt.line); got != tt.want {
				t.Errorf("address of %q = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	const junit = `<testsuites time="1.0" tests="5" failures="1" errors="1" skipped="2">
  <testsuite name="OCI Conformance Test" tests="5" failures="1" errors="1" skipped="2" time="1.0">
    <properties><property name="Config" value="..."></property></properties>
    <testcase name="OCI Conformance Test/ping" classname="" time="0.1" status="passed"></testcase>
    <testcase name="OCI Conformance Test/sha256 blobs/post only/blob-post-only" classname="" time="0.1" status="failure">
      <system-out>blob post failed: unexpected status code, expected one of [201 202], received 405</system-out>
      <system-err><![CDATA[~~~ REQUEST ~~~
Method: POST]]></system-err>
    </testcase>
    <testcase name="OCI Conformance Test/image/referrers" classname="" time="0.1" status="error"><system-out>engine</system-out></testcase>
    <testcase name="OCI Conformance Test/image/tag-list" classname="" time="0.1" status="skipped"><system-out>registry returned status 202, fell back to blob POST+PUT</system-out></testcase>
    <testcase name="OCI Conformance Test/image/tag-param" classname="" time="0.1" status="skipped"><system-out>API is disabled by user configuration</system-out></testcase>
  </testsuite>
</testsuites>`
	path := filepath.Join(t.TempDir(), "junit.xml")
	if err := os.WriteFile(path, []byte(junit), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := readJUnit(path)
	if err != nil {
		t.Fatal(err)
	}
	failed := rep.failed()
	if len(failed) != 2 {
		t.Fatalf("failed() = %d results, want 2", len(failed))
	}
	if got, want := skipReport(rep.skipped()), "  OCI Conformance Test/image/tag-list: registry returned status 202, fell back to blob POST+PUT"; got != want {
		t.Errorf("skipReport = %q, want %q", got, want)
	}
	msg := failureReport(rep, failed)
	for _, want := range []string{
		"the suite counts 1 FAIL and 1 Error of 5 checks, in 2 results",
		"sha256 blobs                             1",
		"OCI Conformance Test/sha256 blobs/post only/blob-post-only [failure]",
		"received 405",
		"Method: POST",
		"OCI Conformance Test/image/referrers [error]",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure report lacks %q:\n%s", want, msg)
		}
	}
	if got, want := rep.counts(), "passed 1, failed 1, errors 1, skipped 2, disabled 0, total 5"; !strings.Contains(got, want) {
		t.Errorf("counts() = %q, want %q", got, want)
	}

	out := "Test results\n...\nOCI Conformance Result: FAIL\n  Pass.....: 1\n  Total....: 4\n\nAPI conformance:\n  Ping....: Pass\n"
	if got, want := summaryLines(out), "OCI Conformance Result: FAIL\n  Pass.....: 1\n  Total....: 4"; got != want {
		t.Errorf("summaryLines = %q, want %q", got, want)
	}
	if got := statusSections(out); !strings.HasPrefix(got, "API conformance:") {
		t.Errorf("statusSections = %q", got)
	}
}
