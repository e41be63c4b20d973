package rules

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The nftables library weft uses cannot attach a comment to a table or a chain, which
// flanneld's tables carry; these few messages are written by hand. Attribute numbers
// missing from x/sys/unix are from the kernel's include/uapi/linux/netfilter/nf_tables.h.
const (
	nftaTableUserdata = 6  // NFTA_TABLE_USERDATA
	nftaChainUserdata = 12 // NFTA_CHAIN_USERDATA

	nfnlBatchBegin = 0x10 // NFNL_MSG_BATCH_BEGIN
	nfnlBatchEnd   = 0x11 // NFNL_MSG_BATCH_END

	nfAccept = 1 // NF_ACCEPT, a base chain's policy
)

// nfnlDial opens a netfilter netlink socket in the namespace nsFd refers to, or in the
// caller's when nsFd is 0.
func nfnlDial(nsFd int) (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: nsFd})
	if err != nil {
		return nil, fmt.Errorf("opening netfilter netlink socket: %w", err)
	}
	return c, nil
}

// nfgenmsg returns the header that starts every nftables message.
func nfgenmsg(f uint8, resID uint16) []byte {
	return []byte{f, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

func nftMsgType(msg int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// commitBatch sends msgs as one nftables transaction, which the kernel applies whole or
// not at all, and waits for each message's acknowledgement.
func commitBatch(nsFd int, msgs []netlink.Message) error {
	c, err := nfnlDial(nsFd)
	if err != nil {
		return err
	}
	defer c.Close()

	batch := make([]netlink.Message, 0, len(msgs)+2)
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: nfnlBatchBegin, Flags: netlink.Request},
		Data:   nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	for _, m := range msgs {
		m.Header.Flags |= netlink.Request | netlink.Acknowledge
		batch = append(batch, m)
	}
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: nfnlBatchEnd, Flags: netlink.Request},
		Data:   nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	if _, err := c.SendMessages(batch); err != nil {
		return fmt.Errorf("sending nftables batch: %w", err)
	}

	for acked := 0; acked < len(msgs); {
		replies, err := c.Receive()
		if err != nil {
			return err
		}
		for _, r := range replies {
			if r.Header.Type == netlink.Error {
				acked++
			}
		}
	}
	return nil
}

// newTableMsg creates table t with its comment, or leaves an existing one alone.
// Equivalent to: nft add table ip flannel-ipv4 { comment "rules for flannel-ipv4" ; }
func newTableMsg(t *table) (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_TABLE_NAME, t.name)
	ae.Uint32(unix.NFTA_TABLE_FLAGS, 0)
	ae.Bytes(nftaTableUserdata, userdata.AppendString(nil, userdata.TypeComment, t.comment))
	data, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encoding table %s %s: %w", t.family, t.name, err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: nftMsgType(unix.NFT_MSG_NEWTABLE), Flags: netlink.Create},
		Data:   append(nfgenmsg(uint8(t.family.nftFamily()), 0), data...),
	}, nil
}

// newChainMsg creates base chain c of table t with policy accept and its comment.
// Equivalent to: nft add chain ip flannel-ipv4 postrtg { type nat hook postrouting
// priority srcnat ; policy accept ; comment "..." ; }
func newChainMsg(t *table, c *chain) (netlink.Message, error) {
	hook, ok := hookNum(c.hook)
	if !ok {
		return netlink.Message{}, fmt.Errorf("chain %s: unknown hook %q", c.name, c.hook)
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_CHAIN_TABLE, t.name)
	ae.String(unix.NFTA_CHAIN_NAME, c.name)
	ae.Nested(unix.NFTA_CHAIN_HOOK, func(nae *netlink.AttributeEncoder) error {
		nae.Uint32(unix.NFTA_HOOK_HOOKNUM, hook)
		nae.Uint32(unix.NFTA_HOOK_PRIORITY, uint32(c.priority))
		return nil
	})
	ae.Uint32(unix.NFTA_CHAIN_POLICY, nfAccept)
	ae.String(unix.NFTA_CHAIN_TYPE, c.kind)
	ae.Bytes(nftaChainUserdata, userdata.AppendString(nil, userdata.TypeComment, c.comment))
	data, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encoding chain %s: %w", c.name, err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: nftMsgType(unix.NFT_MSG_NEWCHAIN), Flags: netlink.Create},
		Data:   append(nfgenmsg(uint8(t.family.nftFamily()), 0), data...),
	}, nil
}

// delChainMsg deletes chain name of table t with its rules.
// Equivalent to: nft delete chain ip flannel-ipv4 postrtg
func delChainMsg(t *table, name string) (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_CHAIN_TABLE, t.name)
	ae.String(unix.NFTA_CHAIN_NAME, name)
	data, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encoding chain %s: %w", name, err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: nftMsgType(unix.NFT_MSG_DELCHAIN)},
		Data:   append(nfgenmsg(uint8(t.family.nftFamily()), 0), data...),
	}, nil
}
