module github.com/v6pod/v6pod/bench/maglev

go 1.26.0

require (
	github.com/cilium/cilium v1.10.0
	github.com/v6pod/v6pod v0.0.0
)

require (
	github.com/StackExchange/wmi v0.0.0-20190523213315-cbe66965904d // indirect
	github.com/go-ole/go-ole v1.2.4 // indirect
	github.com/shirou/gopsutil/v3 v3.21.2 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

replace github.com/v6pod/v6pod => ../..
