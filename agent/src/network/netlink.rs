//! Small netlink steps the host network is built from, each safe to repeat: connections in
//! the host's or a pod's network namespace, links found by name, errors by errno.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, LinkUnspec};

use super::{io_err, netns, Error, Result};

pub(super) const EEXIST: i32 = 17;
pub(super) const ENODEV: i32 = 19;
pub(super) const ESRCH: i32 = 3;

pub(super) fn netlink_err(op: &'static str) -> impl FnOnce(rtnetlink::Error) -> Error {
    move |e| Error::Netlink {
        op,
        message: e.to_string(),
    }
}

/// The kernel's errno in a netlink error, as a positive number.
pub(super) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => Some(msg.raw_code().abs()),
        _ => None,
    }
}

/// Treats "already exists" as done, for steps that are repeated after a restart.
pub(super) fn exists_ok(result: Result<(), rtnetlink::Error>, op: &'static str) -> Result<()> {
    match result {
        Err(e) if errno(&e) != Some(EEXIST) => Err(netlink_err(op)(e)),
        _ => Ok(()),
    }
}

/// A netlink connection in the agent's own network namespace.
pub(super) fn host_handle() -> Result<Handle> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(io_err("open a netlink socket".into()))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// A netlink connection in the network namespace at `netns`: the socket is opened by a
/// thread inside it and stays bound to it, while the connection runs on this runtime.
pub(super) async fn pod_handle(netns: &Path) -> Result<Handle> {
    let runtime = tokio::runtime::Handle::current();
    let netns = netns.to_path_buf();
    let (connection, handle, _) = tokio::task::spawn_blocking(move || {
        netns::in_netns(&netns, move || {
            let _entered = runtime.enter();
            rtnetlink::new_connection().map_err(io_err("open a netlink socket in the pod".into()))
        })
    })
    .await
    .map_err(|e| io_err("open a netlink socket in the pod".into())(std::io::Error::other(e)))??;
    tokio::spawn(connection);
    Ok(handle)
}

/// The index of the link called `name`, if there is one.
pub(super) async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>> {
    match handle
        .link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(netlink_err("get link")(e)),
    }
}

pub(super) async fn delete_link(handle: &Handle, name: &str) -> Result<()> {
    if let Some(index) = link_index(handle, name).await? {
        match handle.link().del(index).execute().await {
            Err(e) if errno(&e) != Some(ENODEV) => return Err(netlink_err("delete link")(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Removes IPv4 addresses of link `index` other than `keep`: an existing sandbox whose
/// reservation changed (the podCIDR changed) must not keep answering on the old address.
pub(super) async fn remove_other_addresses(
    handle: &Handle,
    index: u32,
    keep: Ipv4Addr,
) -> Result<()> {
    let addresses: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(netlink_err("list the pod's addresses"))?;
    for address in addresses {
        let stale = address
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(ip)) if *ip != keep));
        if stale {
            handle
                .address()
                .del(address)
                .execute()
                .await
                .map_err(netlink_err("remove a stale pod address"))?;
        }
    }
    Ok(())
}

/// A route's destination and gateway, when both are IPv4.
/// A route's destination network and prefix length, gateway or not.
pub(super) fn route_destination(route: &RouteMessage) -> Option<(Ipv4Addr, u8)> {
    route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                Some((*ip, route.header.destination_prefix_length))
            }
            _ => None,
        })
}

pub(super) fn route_key(route: &RouteMessage) -> Option<(Ipv4Addr, u8, Ipv4Addr)> {
    let mut destination = None;
    let mut gateway = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = Some(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            _ => {}
        }
    }
    Some((
        destination?,
        route.header.destination_prefix_length,
        gateway?,
    ))
}

pub(super) async fn set_up(handle: &Handle, index: u32) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink_err("set link up"))
}
