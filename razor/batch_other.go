//go:build !(linux && (amd64 || arm64))

package razor

import "net"

// serveUDPBatch is only implemented on Linux; elsewhere serveUDP reads one
// datagram at a time.
func (s *Server) serveUDPBatch(*net.UDPConn) bool { return false }
