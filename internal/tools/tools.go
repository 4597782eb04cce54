//go:build tools

// Package tools pins the modules v6pod builds on until their users land.
package tools

import (
	_ "github.com/hashicorp/consul/api"
	_ "github.com/miekg/dns"
	_ "github.com/osrg/gobgp/v3/api"
	_ "github.com/osrg/gobgp/v3/pkg/server"
	_ "github.com/p4lang/p4runtime/go/p4/config/v1"
	_ "github.com/p4lang/p4runtime/go/p4/v1"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/vishvananda/netlink"
	_ "golang.org/x/net/ipv4"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
)
