package lab

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// startApps starts one appserver per container address in the app namespace.
func (l *Lab) startApps() error {
	var addrs []string
	for _, c := range Containers {
		addrs = append(addrs, net.JoinHostPort(c, strconv.Itoa(containerPort)))
	}
	if _, err := l.start("apps", nsApp, l.bin("appserver"), "--listen", strings.Join(addrs, ",")); err != nil {
		return err
	}
	return waitFor(10*time.Second, "containers answer", func() error {
		for _, a := range addrs {
			if _, err := inNS(nsApp, "curl", "-sf", "-m", "2", "http://"+a+"/"); err != nil {
				return err
			}
		}
		return nil
	})
}

func (l *Lab) bin(name string) string { return l.Bin + "/" + name }

// Curl fetches url from the client namespace and returns the body.
func (l *Lab) Curl(args ...string) (string, error) {
	return inNS(nsClient, "curl", append([]string{"-sS", "-m", "3"}, args...)...)
}

// ContainerURL is the URL of container i, reached directly.
func ContainerURL(i int) string {
	return fmt.Sprintf("http://[%s]:%d/", Containers[i], containerPort)
}
