package study

import (
	"bytes"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var small = Config{Backends: []int{3, 10}, MaxRatio: 400, Flows: 20000, Trials: 2}

func TestSizesArePrimesUpToRatio(t *testing.T) {
	s := Sizes(Config{}, 100)
	if s[0] != 1021 {
		t.Fatalf("first size %d, want 1021", s[0])
	}
	if last := s[len(s)-1]; last < 2000*100 || last > 4*2000*100 {
		t.Fatalf("last size %d, want just above 200000", last)
	}
	for i := 1; i < len(s); i++ {
		if s[i] <= s[i-1] {
			t.Fatalf("sizes not increasing: %v", s)
		}
	}
}

func TestStudyRows(t *testing.T) {
	t.Parallel()
	rows := Study(small)
	if len(rows) != 2*(len(Sizes(small, 3))+len(Sizes(small, 10))) {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if r.Ideal != 1/float64(r.Backends) {
			t.Errorf("%+v: ideal", r)
		}
		// At least the removed backend's share moves (its slots are
		// within 1 of M/N), and never everything.
		if r.SlotsMoved < r.Ideal-1/float64(r.TableSize)-1e-9 || r.SlotsMoved > 0.5 {
			t.Errorf("%+v: slots moved out of range", r)
		}
		// Flows are uniform samples of slots: close to the slot share.
		if math.Abs(r.FlowsMoved-r.SlotsMoved) > 0.02 {
			t.Errorf("%+v: flows and slots disagree", r)
		}
		if r.Disturbed < 0 || r.Disturbed > r.SlotsMoved {
			t.Errorf("%+v: disturbed", r)
		}
	}
}

func TestMainJSON(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	plot := filepath.Join(t.TempDir(), "study.png")
	code := Main([]string{"--backends", "3,10", "--max-ratio", "400", "--flows", "10000", "--trials", "1", "-o", "json", "--plot", plot}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// Standard output holds only a JSON array of the schema.
	var raw []map[string]any
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Fatal("more than one JSON value on stdout")
	}
	if len(raw) == 0 {
		t.Fatal("no rows")
	}
	for _, r := range raw {
		if len(r) != 6 {
			t.Fatalf("row %v: want exactly 6 keys", r)
		}
		for _, k := range []string{"backends", "table_size", "slots_moved", "flows_moved", "ideal"} {
			if _, ok := r[k].(float64); !ok {
				t.Fatalf("row %v: %s not a number", r, k)
			}
		}
		if op := r["op"]; op != "remove" && op != "add" {
			t.Fatalf("op %v", op)
		}
		for _, k := range []string{"slots_moved", "flows_moved", "ideal"} {
			if v := r[k].(float64); v < 0 || v > 1 {
				t.Fatalf("%s = %v not a fraction", k, v)
			}
		}
	}
	f, err := os.Open(plot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("plot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
		t.Fatalf("plot %v too small", b)
	}
}

func TestMainTableAndErrors(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	if code := Main([]string{"--backends", "5", "--max-ratio", "300", "--trials", "1", "--flows", "1000"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "flows_moved") || !strings.Contains(out.String(), "remove") {
		t.Fatalf("table output:\n%s", out.String())
	}
	for _, args := range [][]string{{"--backends", "1"}, {"--backends", "x"}, {"-o", "yaml"}, {"extra"}} {
		out.Reset()
		errb.Reset()
		if code := Main(args, &out, &errb); code != 2 || errb.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}

// TestRun runs the study with STUDY_ARGS (space-separated) when set, for
// a manual run without the ops binary:
//
//	STUDY_ARGS="--plot /tmp/s.png" go test -run TestRun -v ./p4/study
func TestRun(t *testing.T) {
	args, ok := os.LookupEnv("STUDY_ARGS")
	if !ok {
		t.Skip("STUDY_ARGS not set")
	}
	if code := Main(strings.Fields(args), os.Stdout, os.Stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
