// Package tun opens Linux TUN devices the way the udp backend needs them: plain
// (IFF_TUN|IFF_NO_PI, as flanneld opens flannel0) or with a virtio-net header and the
// checksum, TCP and UDP segmentation offloads, so that one read yields a TCP super-packet
// and one write delivers one; with one queue or several (IFF_MULTI_QUEUE). It talks to
// /dev/net/tun through golang.org/x/sys/unix and reads and writes through Go's poller,
// without allocating per packet. The device is not persistent: it disappears when its
// last queue is closed.
package tun
