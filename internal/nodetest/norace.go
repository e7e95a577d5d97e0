//go:build !race

package nodetest

// raceEnabled: the tests run with -race, and so does the node they build.
const raceEnabled = false
