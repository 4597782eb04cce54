// Command lab brings the namespace lab up and down by hand:
//
//	lab up   [-dir lab/run] [-bin bin]   build the pod and leave it running
//	lab down [-dir lab/run]              stop every process, delete every namespace
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/v6pod/v6pod/lab"
)

func main() {
	fs := flag.NewFlagSet("lab", flag.ExitOnError)
	dir := fs.String("dir", "lab/run", "`folder` for configs, logs and PID files")
	bin := fs.String("bin", "bin", "`folder` of the project's binaries")
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: lab up|down [-dir DIR] [-bin DIR]")
		os.Exit(2)
	}
	fs.Parse(os.Args[2:])
	l, err := lab.New(*dir, *bin, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Args[1] == "down" {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := l.Up(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		l.Down()
		os.Exit(1)
	}
	fmt.Printf(`lab: up; logs in %s. Try:
  ip netns exec v6lab-client curl http://www.customer.test/
  ip netns exec v6lab-client dig www.customer.test AAAA
  ip -n v6lab-tor route show %s
  make lab-down
`, *dir, lab.VIP4s[0])
}
