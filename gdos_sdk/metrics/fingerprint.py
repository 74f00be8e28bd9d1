"""What a machine is: OS, CPU, memory, disks, MACs, machine-id (sent once in ``hello``).

Every probe tolerates a missing file or a refused read: a fingerprint with a
blank field beats a worker that cannot start on an unusual host.

Example::

    from gdos_sdk.metrics import collect_fingerprint, local_addresses

    fp = collect_fingerprint()
    print(fp.os_version, fp.cpu_model, fp.memory_bytes, local_addresses())
"""

from __future__ import annotations

import ipaddress
import platform
import socket
from pathlib import Path

import psutil

from gdos_sdk.models import Disk, Fingerprint

__all__ = ["PSEUDO_FILESYSTEMS", "collect_fingerprint", "local_addresses"]

PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs",
        "devpts", "devtmpfs", "efivarfs", "fuse.gvfsd-fuse", "fuse.lxcfs", "fuse.portal",
        "fusectl", "hugetlbfs", "mqueue", "nsfs", "overlay", "proc", "pstore", "ramfs",
        "securityfs", "squashfs", "sysfs", "tmpfs", "tracefs",
    }
)  # fmt: skip
"""File system types that are not storage a user cares about (snaps are squashfs)."""

_OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")
_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
_CPU_MODEL_KEYS = ("model name", "hardware", "processor", "cpu model", "cpu")
_NULL_MAC = "00:00:00:00:00:00"
# AF_PACKET (Linux) and AF_LINK (BSD, macOS) carry MAC addresses; psutil.AF_LINK
# is the right one for the running platform.
_LINK_FAMILY = psutil.AF_LINK


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _os_release() -> dict[str, str]:
    for path in _OS_RELEASE_FILES:
        text = _read_text(path)
        if text is None:
            continue
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                fields[key.strip()] = value.strip().strip("\"'")
        return fields
    return {}


def _os_version(system: str) -> str:
    release = _os_release()
    if release:
        return release.get("PRETTY_NAME") or " ".join(
            part for part in (release.get("NAME"), release.get("VERSION_ID")) if part
        )
    if system == "Darwin":
        return f"macOS {platform.mac_ver()[0]}".strip()
    if system == "Windows":
        return f"Windows {platform.release()} {platform.version()}".strip()
    return platform.version()


def _cpu_model() -> str:
    text = _read_text("/proc/cpuinfo")
    if text:
        found: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            key = key.strip().lower()
            # "processor" is the CPU index on x86 ("0"), the model name on some ARM boards.
            if sep and value.strip() and key not in found and not value.strip().isdigit():
                found[key] = value.strip()
        for key in _CPU_MODEL_KEYS:
            if key in found:
                return found[key]
    return platform.processor() or platform.machine()


def _disks() -> list[Disk]:
    disks: list[Disk] = []
    seen: set[str] = set()
    try:
        partitions = psutil.disk_partitions(all=False)
    except OSError:
        return disks
    # One entry per device, at its shortest mountpoint: bind mounts (a container's
    # /etc/hosts, btrfs subvolumes) would repeat the same file system's numbers.
    for part in sorted(partitions, key=lambda p: (len(p.mountpoint), p.mountpoint)):
        key = part.device if part.device.startswith("/") else part.mountpoint
        if part.fstype in PSEUDO_FILESYSTEMS or key in seen:
            continue
        try:
            total = psutil.disk_usage(part.mountpoint).total
        except OSError:  # PermissionError, a stale network mount, a CD drive with no disc
            continue
        seen.add(key)
        disks.append(
            Disk(
                device=part.device,
                mountpoint=part.mountpoint,
                fstype=part.fstype,
                total_bytes=total,
            )
        )
    return disks


def _macs() -> list[str]:
    macs: set[str] = set()
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == _LINK_FAMILY and addr.address:
                mac = addr.address.lower().replace("-", ":")
                if mac != _NULL_MAC:
                    macs.add(mac)
    return sorted(macs)


def _machine_id() -> str | None:
    for path in _MACHINE_ID_FILES:
        text = _read_text(path)
        if text and text.strip():
            return text.strip()
    return None


def collect_fingerprint() -> Fingerprint:
    """Describe this machine for the master (a few file reads; call once at start).

    Example::

        fp = collect_fingerprint()
        fp.cpu_cores, [d.mountpoint for d in fp.disks]
    """
    system = platform.system()
    logical = psutil.cpu_count(logical=True) or 1
    return Fingerprint(
        os=system,
        os_version=_os_version(system),
        kernel=platform.release(),
        arch=platform.machine(),
        cpu_model=_cpu_model(),
        cpu_cores=logical,
        cpu_physical_cores=psutil.cpu_count(logical=False) or logical,
        memory_bytes=psutil.virtual_memory().total,
        disks=_disks(),
        macs=_macs(),
        machine_id=_machine_id(),
        boot_time=psutil.boot_time(),
        python=platform.python_version(),
    )


def local_addresses() -> list[str]:
    """This machine's IP addresses: IPv4 first, no loopback or link-local unless nothing else.

    Example::

        local_addresses()  # ["192.168.1.20", "2001:db8::20"]
    """
    routable: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    fallback: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                # IPv6 link-local addresses carry a zone ("fe80::1%eth0").
                ip = ipaddress.ip_address(addr.address.split("%", 1)[0])
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
                fallback.append(ip)
            else:
                routable.append(ip)
    chosen = routable or fallback
    unique = dict.fromkeys(sorted(chosen, key=lambda ip: (ip.version, ip.packed)))
    return [str(ip) for ip in unique]
