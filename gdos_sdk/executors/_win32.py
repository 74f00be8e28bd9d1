"""The real Win32 calls behind :class:`~gdos_sdk.executors.windows.WindowsExecutor` (ctypes).

Windows only. The ``assert`` after the imports stops an import elsewhere, and
tells mypy to check the rest of this module only under ``--platform win32``
(``nox -s typecheck_windows``): none of it can run on the Linux CI, so the type
checker and the executor's fake-backed tests are what guard it.

Example::

    WindowsExecutor(api=Win32Api())
"""

from __future__ import annotations

import ctypes
import logging
import msvcrt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from ctypes import wintypes
from typing import Any

import anyio
import psutil

from gdos_sdk.executors.base import TAG_ENV

assert sys.platform == "win32", "gdos_sdk.executors._win32 is for Windows only"

__all__ = ["Win32Api"]

log = logging.getLogger(__name__)

_k32 = ctypes.WinDLL("kernel32", use_last_error=True)

_HANDLE = wintypes.HANDLE
_BOOL = wintypes.BOOL
_DWORD = wintypes.DWORD
_INVALID_HANDLE = ctypes.c_void_p(-1).value

# Access rights and constants (winnt.h, winbase.h).
_PROCESS_TERMINATE = 0x0001
_PROCESS_DUP_HANDLE = 0x0040
_PROCESS_SET_QUOTA = 0x0100
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_SYNCHRONIZE = 0x00100000
_THREAD_SUSPEND_RESUME = 0x0002
_JOB_OBJECT_ALL_ACCESS = 0x1F001F
_JOB_OBJECT_QUERY = 0x0004
_TH32CS_SNAPTHREAD = 0x4
_WAIT_OBJECT_0 = 0
_WAIT_TIMEOUT = 0x102
_ERROR_MORE_DATA = 234
_FILE_APPEND_DATA = 0x0004
_FILE_SHARE_ALL = 0x1 | 0x2 | 0x4  # read, write, delete: rotation copies and truncates
_OPEN_ALWAYS = 4
_FILE_ATTRIBUTE_NORMAL = 0x80
_JobObjectBasicProcessIdList = 3
_JobObjectExtendedLimitInformation = 9
_JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION = 0x0400
# 100 ns ticks between 1601-01-01 (FILETIME) and 1970-01-01 (Unix epoch).
_EPOCH_AS_FILETIME = 116444736000000000

# What a handle on an instance process may do: wait, read times and exit code,
# terminate, join a job, receive a duplicated handle.
_PROCESS_RIGHTS = (
    _PROCESS_TERMINATE
    | _PROCESS_DUP_HANDLE
    | _PROCESS_SET_QUOTA
    | _PROCESS_QUERY_LIMITED_INFORMATION
    | _SYNCHRONIZE
)
_PROCESS_RIGHTS_MIN = _PROCESS_TERMINATE | _PROCESS_QUERY_LIMITED_INFORMATION | _SYNCHRONIZE


class _IoCounters(ctypes.Structure):
    _fields_ = [
        ("ReadOperationCount", ctypes.c_ulonglong),
        ("WriteOperationCount", ctypes.c_ulonglong),
        ("OtherOperationCount", ctypes.c_ulonglong),
        ("ReadTransferCount", ctypes.c_ulonglong),
        ("WriteTransferCount", ctypes.c_ulonglong),
        ("OtherTransferCount", ctypes.c_ulonglong),
    ]


class _BasicLimits(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", wintypes.LARGE_INTEGER),
        ("PerJobUserTimeLimit", wintypes.LARGE_INTEGER),
        ("LimitFlags", _DWORD),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", _DWORD),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", _DWORD),
        ("SchedulingClass", _DWORD),
    ]


class _ExtendedLimits(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class _ThreadEntry32(ctypes.Structure):
    _fields_ = [
        ("dwSize", _DWORD),
        ("cntUsage", _DWORD),
        ("th32ThreadID", _DWORD),
        ("th32OwnerProcessID", _DWORD),
        ("tpBasePri", wintypes.LONG),
        ("tpDeltaPri", wintypes.LONG),
        ("dwFlags", _DWORD),
    ]


def _pid_list(capacity: int) -> ctypes.Structure:
    """A JOBOBJECT_BASIC_PROCESS_ID_LIST with room for ``capacity`` ids."""

    class _ProcessIdList(ctypes.Structure):
        _fields_ = [
            ("NumberOfAssignedProcesses", _DWORD),
            ("NumberOfProcessIdsInList", _DWORD),
            ("ProcessIdList", ctypes.c_size_t * capacity),
        ]

    return _ProcessIdList()


def _fn(name: str, restype: Any, *argtypes: Any) -> Any:
    func = getattr(_k32, name)
    func.restype = restype
    func.argtypes = argtypes
    return func


_LPFILETIME = ctypes.POINTER(wintypes.FILETIME)
_CreateJobObjectW = _fn("CreateJobObjectW", _HANDLE, wintypes.LPVOID, wintypes.LPCWSTR)
_OpenJobObjectW = _fn("OpenJobObjectW", _HANDLE, _DWORD, _BOOL, wintypes.LPCWSTR)
_SetInformationJobObject = _fn(
    "SetInformationJobObject", _BOOL, _HANDLE, ctypes.c_int, wintypes.LPVOID, _DWORD
)
_QueryInformationJobObject = _fn(
    "QueryInformationJobObject",
    _BOOL,
    _HANDLE,
    ctypes.c_int,
    wintypes.LPVOID,
    _DWORD,
    ctypes.POINTER(_DWORD),
)
_AssignProcessToJobObject = _fn("AssignProcessToJobObject", _BOOL, _HANDLE, _HANDLE)
_TerminateJobObject = _fn("TerminateJobObject", _BOOL, _HANDLE, wintypes.UINT)
_OpenProcess = _fn("OpenProcess", _HANDLE, _DWORD, _BOOL, _DWORD)
_GetProcessTimes = _fn(
    "GetProcessTimes", _BOOL, _HANDLE, _LPFILETIME, _LPFILETIME, _LPFILETIME, _LPFILETIME
)
_GetExitCodeProcess = _fn("GetExitCodeProcess", _BOOL, _HANDLE, ctypes.POINTER(_DWORD))
_WaitForSingleObject = _fn("WaitForSingleObject", _DWORD, _HANDLE, _DWORD)
_TerminateProcess = _fn("TerminateProcess", _BOOL, _HANDLE, wintypes.UINT)
_CloseHandle = _fn("CloseHandle", _BOOL, _HANDLE)
_GetCurrentProcess = _fn("GetCurrentProcess", _HANDLE)
_DuplicateHandle = _fn(
    "DuplicateHandle",
    _BOOL,
    _HANDLE,
    _HANDLE,
    _HANDLE,
    ctypes.POINTER(_HANDLE),
    _DWORD,
    _BOOL,
    _DWORD,
)
_CreateToolhelp32Snapshot = _fn("CreateToolhelp32Snapshot", _HANDLE, _DWORD, _DWORD)
_Thread32First = _fn("Thread32First", _BOOL, _HANDLE, ctypes.POINTER(_ThreadEntry32))
_Thread32Next = _fn("Thread32Next", _BOOL, _HANDLE, ctypes.POINTER(_ThreadEntry32))
_OpenThread = _fn("OpenThread", _HANDLE, _DWORD, _BOOL, _DWORD)
_ResumeThread = _fn("ResumeThread", _DWORD, _HANDLE)
_CreateFileW = _fn(
    "CreateFileW",
    _HANDLE,
    wintypes.LPCWSTR,
    _DWORD,
    _DWORD,
    wintypes.LPVOID,
    _DWORD,
    _DWORD,
    _HANDLE,
)


def _error(what: str) -> OSError:
    """The last Win32 error as an :class:`OSError` with ``winerror`` set."""
    code = ctypes.get_last_error()
    return ctypes.WinError(code, f"{what}: {ctypes.FormatError(code)}")


def _handle(value: int | None, what: str) -> int:
    if not value or value == _INVALID_HANDLE:
        raise _error(what)
    return int(value)


class Win32Api:
    """Win32 through ctypes: the :class:`~gdos_sdk.executors.winapi.WinApi` for production.

    Example::

        WindowsExecutor(api=Win32Api())
    """

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """``anyio.sleep()``."""
        await anyio.sleep(seconds)

    def is_file(self, path: str) -> bool:
        """``os.path.isfile``."""
        return os.path.isfile(path)

    def open_log(self, path: str) -> int:
        """A descriptor whose OS handle has ``FILE_APPEND_DATA`` but not ``FILE_WRITE_DATA``.

        Every write through such a handle lands at the end of the file, like
        ``O_APPEND`` on POSIX: after the worker truncates the log to rotate it,
        the service writes at the new end rather than leaving a hole.
        """
        raw = _CreateFileW(
            path,
            _FILE_APPEND_DATA | _SYNCHRONIZE,
            _FILE_SHARE_ALL,
            None,
            _OPEN_ALWAYS,
            _FILE_ATTRIBUTE_NORMAL,
            None,
        )
        handle = _handle(raw, f"CreateFileW({path!r})")
        try:
            return msvcrt.open_osfhandle(handle, os.O_WRONLY | os.O_APPEND)
        except OSError:
            _CloseHandle(handle)
            raise

    def close_fd(self, fd: int) -> None:
        """``os.close`` (closes the OS handle too)."""
        os.close(fd)

    def start_suspended(
        self,
        command_line: str,
        *,
        cwd: str,
        env: Mapping[str, str],
        stdout_fd: int,
        creationflags: int,
    ) -> subprocess.Popen[bytes]:
        """``CreateProcess`` through :class:`subprocess.Popen`.

        Popen restricts inheritance to the three standard handles
        (``close_fds=True`` uses a handle list), so no other worker handle leaks
        into the service.
        """
        return subprocess.Popen(
            command_line,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout_fd,
            stderr=subprocess.STDOUT,
            creationflags=creationflags,
            close_fds=True,
        )

    def resume(self, pid: int) -> None:
        """Resume every thread of ``pid`` (created suspended: just its main thread).

        Popen closes the main thread's handle, so the thread is found again in
        a Toolhelp snapshot.
        """
        snapshot = _handle(_CreateToolhelp32Snapshot(_TH32CS_SNAPTHREAD, 0), "snapshot")
        resumed = 0
        try:
            entry = _ThreadEntry32()
            entry.dwSize = ctypes.sizeof(_ThreadEntry32)
            more = bool(_Thread32First(snapshot, ctypes.byref(entry)))
            while more:
                if entry.th32OwnerProcessID == pid:
                    thread = _handle(
                        _OpenThread(_THREAD_SUSPEND_RESUME, False, entry.th32ThreadID),
                        f"OpenThread({entry.th32ThreadID})",
                    )
                    try:
                        if _ResumeThread(thread) == 0xFFFFFFFF:
                            raise _error(f"ResumeThread({entry.th32ThreadID})")
                        resumed += 1
                    finally:
                        _CloseHandle(thread)
                more = bool(_Thread32Next(snapshot, ctypes.byref(entry)))
        finally:
            _CloseHandle(snapshot)
        if not resumed:
            raise OSError(f"process {pid} has no thread to resume")

    def create_job(self, name: str) -> int:
        """``CreateJobObjectW`` + limits: die on unhandled exception, nothing else.

        Deliberately absent: ``KILL_ON_JOB_CLOSE`` (a dying worker would take its
        services along) and ``BREAKAWAY_OK`` / ``SILENT_BREAKAWAY_OK`` (a
        descendant could then leave the job and outlive a stop).
        """
        job = _handle(_CreateJobObjectW(None, name), f"CreateJobObjectW({name!r})")
        info = _ExtendedLimits()
        # No error dialog waiting for a click: a crashed service exits and is restarted.
        info.BasicLimitInformation.LimitFlags = _JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION
        if not _SetInformationJobObject(
            job, _JobObjectExtendedLimitInformation, ctypes.byref(info), ctypes.sizeof(info)
        ):
            error = _error("SetInformationJobObject")
            _CloseHandle(job)
            raise error
        return job

    def open_job(self, name: str) -> int | None:
        """``OpenJobObjectW``; ``None`` when there is no such job or it is not ours."""
        job = _OpenJobObjectW(_JOB_OBJECT_ALL_ACCESS, False, name)
        if not job:
            log.debug("no job %s: %s", name, ctypes.FormatError(ctypes.get_last_error()))
            return None
        return int(job)

    def assign(self, job: int, process: int) -> None:
        """``AssignProcessToJobObject``."""
        if not _AssignProcessToJobObject(job, process):
            raise _error("AssignProcessToJobObject")

    def share_job(self, job: int, process: int) -> None:
        """Duplicate the job handle into ``process`` (never closed there, never inherited).

        A named kernel object loses its name when its last handle closes, even
        while processes still belong to it; this copy keeps ``gdos-<id>`` open
        for as long as the main process lives, so a restarted worker finds it.
        The copy may only query the job: the service cannot change its limits.
        """
        target = _HANDLE()
        if not _DuplicateHandle(
            _GetCurrentProcess(),
            job,
            process,
            ctypes.byref(target),
            _JOB_OBJECT_QUERY,
            False,
            0,
        ):
            raise _error("DuplicateHandle(job)")

    def job_pids(self, job: int) -> list[int]:
        """``QueryInformationJobObject(JobObjectBasicProcessIdList)``, growing the buffer."""
        capacity = 64
        while True:
            info: Any = _pid_list(capacity)
            ok = _QueryInformationJobObject(
                job, _JobObjectBasicProcessIdList, ctypes.byref(info), ctypes.sizeof(info), None
            )
            if ok:
                count = int(info.NumberOfProcessIdsInList)
                return [int(info.ProcessIdList[i]) for i in range(count)]
            if ctypes.get_last_error() != _ERROR_MORE_DATA:
                raise _error("QueryInformationJobObject")
            capacity = int(info.NumberOfAssignedProcesses) + 16

    def terminate_job(self, job: int, exit_code: int) -> None:
        """``TerminateJobObject``."""
        if not _TerminateJobObject(job, exit_code):
            raise _error("TerminateJobObject")

    def open_process(self, pid: int) -> int | None:
        """``OpenProcess`` with the rights the executor uses (fewer if those are refused)."""
        for rights in (_PROCESS_RIGHTS, _PROCESS_RIGHTS_MIN):
            process = _OpenProcess(rights, False, pid)
            if process:
                return int(process)
        return None

    def create_time(self, process: int) -> float:
        """``GetProcessTimes`` creation time, as seconds since the epoch."""
        times = [wintypes.FILETIME() for _ in range(4)]
        if not _GetProcessTimes(process, *(ctypes.byref(t) for t in times)):
            raise _error("GetProcessTimes")
        created = times[0]
        ticks = (int(created.dwHighDateTime) << 32) | int(created.dwLowDateTime)
        return (ticks - _EPOCH_AS_FILETIME) / 1e7

    def exit_code(self, process: int) -> int | None:
        """The exit code once the process is signalled (259 could be a real exit code)."""
        state = int(_WaitForSingleObject(process, 0))
        if state == _WAIT_TIMEOUT:
            return None
        if state != _WAIT_OBJECT_0:
            raise _error("WaitForSingleObject")
        code = _DWORD()
        if not _GetExitCodeProcess(process, ctypes.byref(code)):
            raise _error("GetExitCodeProcess")
        return int(code.value)

    def terminate_process(self, process: int, exit_code: int) -> None:
        """``TerminateProcess``; an already-exited process is not an error."""
        if not _TerminateProcess(process, exit_code) and self.exit_code(process) is None:
            raise _error("TerminateProcess")

    def ctrl_break(self, pgid: int) -> bool:
        """``GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pgid)`` via :func:`os.kill`.

        Fails when the group does not share the worker's console (a worker
        without a console, e.g. started by ``pythonw``).
        """
        if pgid <= 0:  # group 0 would be every process on the console, the worker too
            return False
        try:
            os.kill(pgid, signal.CTRL_BREAK_EVENT)
        except OSError as exc:
            log.debug("Ctrl+Break to group %d not delivered: %s", pgid, exc)
            return False
        return True

    def close(self, handle: int) -> None:
        """``CloseHandle``."""
        _CloseHandle(handle)

    def tagged_pids(self, tag: str) -> list[int]:
        """Processes whose environment holds ``GDOS_INSTANCE_ID=tag`` (read via psutil)."""
        me = os.getpid()
        found = []
        for proc in psutil.process_iter():
            if proc.pid in (0, 4, me):  # System Idle and System have no environment
                continue
            try:
                if proc.environ().get(TAG_ENV) == tag:
                    found.append(proc.pid)
            except psutil.Error:
                continue
        return found

    def kill_tagged(self, tag: str, exit_code: int) -> list[int]:
        """Terminate tagged processes, re-checking the tag while a handle pins each pid."""
        killed = []
        for pid in self.tagged_pids(tag):
            process = self.open_process(pid)
            if process is None:
                continue
            try:
                if psutil.Process(pid).environ().get(TAG_ENV) != tag:
                    continue  # the pid changed hands between the scan and the open
                self.terminate_process(process, exit_code)
                killed.append(pid)
            except (psutil.Error, OSError) as exc:
                log.warning("cannot terminate tagged pid %d: %s", pid, exc)
            finally:
                _CloseHandle(process)
        return killed
