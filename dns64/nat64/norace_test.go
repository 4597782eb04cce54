//go:build !race

package nat64

const raceEnabled = false
