// Package storjtier is the global tier: one bucket that every node of every
// region shares, so that an origin is paid once per fleet. It holds a small
// object-store interface (Backend) with three implementations, native Storj
// through uplink (Storj), S3-compatible stores through minio-go (S3) and a
// local directory (Dir), and the registry's object layout on top of it.
package storjtier
