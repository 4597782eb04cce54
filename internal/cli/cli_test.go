package cli

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args []string
		code int
		ok   bool
		out  string
	}{
		{[]string{"-x", "1"}, 0, true, ""},
		{[]string{"-h"}, 0, false, "Usage"},
		{[]string{"-nope"}, 2, false, "not defined"},
		{[]string{"stray"}, 2, false, `cmd: unexpected argument "stray"`},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
		fs.SetOutput(&out)
		fs.String("x", "", "")
		code, ok := Parse(fs, tt.args)
		if code != tt.code || ok != tt.ok || !strings.Contains(out.String(), tt.out) {
			t.Errorf("Parse(%q) = %d, %v, output %q; want %d, %v, %q", tt.args, code, ok, out.String(), tt.code, tt.ok, tt.out)
		}
	}
}

func TestList(t *testing.T) {
	var got []string
	fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
	fs.Func("u", "", List(&got))
	fs.Parse([]string{"-u", "a, b", "-u", "c", "-u", ","})
	if strings.Join(got, "|") != "a|b|c" {
		t.Errorf("got %q", got)
	}
}

func TestLogger(t *testing.T) {
	var out bytes.Buffer
	log, err := Logger(&out, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown")
	if strings.Contains(out.String(), "hidden") || !strings.Contains(out.String(), `"msg":"shown"`) {
		t.Errorf("output %q", out.String())
	}
	for _, bad := range [][2]string{{"loud", ""}, {"", "xml"}} {
		if _, err := Logger(&out, bad[0], bad[1]); err == nil {
			t.Errorf("Logger(%q, %q): no error", bad[0], bad[1])
		}
	}
}
