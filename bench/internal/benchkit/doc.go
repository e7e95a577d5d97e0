// Package benchkit is what the benchmark programs under bench/ share:
// building the edge binary from a clean export of HEAD, running server
// processes each in a process group of its own (stopped together on any way
// out), waiting for them to answer over HTTP, reading the addresses an
// edge node logs in its `msg=listening listener=NAME addr=ADDR` lines, and
// measuring the CPU that other processes on a shared machine take meanwhile.
package benchkit
