"""BSM errno numbers (Solaris numbering plus OpenBSM extensions) <-> Linux.

The return token's status byte holds a *BSM* errno.  The numbers are those
of OpenBSM's ``sys/bsm/audit_errno.h`` (bsm-format.md 1a.2: 1-34 match
Linux, e.g. ENOSYS is 38 on Linux and 89 in BSM).  The mapping is by errno
*name*: a BSM number maps to the Linux errno of the same name when Linux has
one.  Lookups scan in BSM-number order and the first match wins, which is
how OpenBSM resolves Linux aliases (EDEADLOCK == EDEADLK -> 45,
EOPNOTSUPP == ENOTSUP -> 48, EWOULDBLOCK == EAGAIN -> 11).
"""

from __future__ import annotations

import errno as _errno

__all__ = ["BSM_ERRNO_NAMES", "BSM_ERRNO_UNKNOWN", "bsm_to_errno", "errno_to_bsm"]

#: BSM errno used when a local errno has no BSM equivalent.
BSM_ERRNO_UNKNOWN = 250

#: (BSM number, errno name), sorted by BSM number.
BSM_ERRNO_NAMES: tuple[tuple[int, str], ...] = (
    (0, "ESUCCESS"),
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (15, "ENOTBLK"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (25, "ENOTTY"),
    (26, "ETXTBSY"),
    (27, "EFBIG"),
    (28, "ENOSPC"),
    (29, "ESPIPE"),
    (30, "EROFS"),
    (31, "EMLINK"),
    (32, "EPIPE"),
    (33, "EDOM"),
    (34, "ERANGE"),
    (35, "ENOMSG"),
    (36, "EIDRM"),
    (37, "ECHRNG"),
    (38, "EL2NSYNC"),
    (39, "EL3HLT"),
    (40, "EL3RST"),
    (41, "ELNRNG"),
    (42, "EUNATCH"),
    (43, "ENOCSI"),
    (44, "EL2HLT"),
    (45, "EDEADLK"),
    (46, "ENOLCK"),
    (47, "ECANCELED"),
    (48, "ENOTSUP"),
    (49, "EDQUOT"),
    (50, "EBADE"),
    (51, "EBADR"),
    (52, "EXFULL"),
    (53, "ENOANO"),
    (54, "EBADRQC"),
    (55, "EBADSLT"),
    (56, "EDEADLOCK"),
    (57, "EBFONT"),
    (58, "EOWNERDEAD"),
    (59, "ENOTRECOVERABLE"),
    (60, "ENOSTR"),
    (61, "ENODATA"),
    (62, "ETIME"),
    (63, "ENOSR"),
    (64, "ENONET"),
    (65, "ENOPKG"),
    (66, "EREMOTE"),
    (67, "ENOLINK"),
    (68, "EADV"),
    (69, "ESRMNT"),
    (70, "ECOMM"),
    (71, "EPROTO"),
    (72, "ELOCKUNMAPPED"),
    (73, "ENOTACTIVE"),
    (74, "EMULTIHOP"),
    (77, "EBADMSG"),
    (78, "ENAMETOOLONG"),
    (79, "EOVERFLOW"),
    (80, "ENOTUNIQ"),
    (81, "EBADFD"),
    (82, "EREMCHG"),
    (83, "ELIBACC"),
    (84, "ELIBBAD"),
    (85, "ELIBSCN"),
    (86, "ELIBMAX"),
    (87, "ELIBEXEC"),
    (88, "EILSEQ"),
    (89, "ENOSYS"),
    (90, "ELOOP"),
    (91, "ERESTART"),
    (92, "ESTRPIPE"),
    (93, "ENOTEMPTY"),
    (94, "EUSERS"),
    (95, "ENOTSOCK"),
    (96, "EDESTADDRREQ"),
    (97, "EMSGSIZE"),
    (98, "EPROTOTYPE"),
    (99, "ENOPROTOOPT"),
    (120, "EPROTONOSUPPORT"),
    (121, "ESOCKTNOSUPPORT"),
    (122, "EOPNOTSUPP"),
    (123, "EPFNOSUPPORT"),
    (124, "EAFNOSUPPORT"),
    (125, "EADDRINUSE"),
    (126, "EADDRNOTAVAIL"),
    (127, "ENETDOWN"),
    (128, "ENETUNREACH"),
    (129, "ENETRESET"),
    (130, "ECONNABORTED"),
    (131, "ECONNRESET"),
    (132, "ENOBUFS"),
    (133, "EISCONN"),
    (134, "ENOTCONN"),
    (143, "ESHUTDOWN"),
    (144, "ETOOMANYREFS"),
    (145, "ETIMEDOUT"),
    (146, "ECONNREFUSED"),
    (147, "EHOSTDOWN"),
    (148, "EHOSTUNREACH"),
    (149, "EALREADY"),
    (150, "EINPROGRESS"),
    (151, "ESTALE"),
    (190, "EPROCLIM"),
    (191, "EBADRPC"),
    (192, "ERPCMISMATCH"),
    (193, "EPROGUNAVAIL"),
    (194, "EPROGMISMATCH"),
    (195, "EPROCUNAVAIL"),
    (196, "EFTYPE"),
    (197, "EAUTH"),
    (198, "ENEEDAUTH"),
    (199, "ENOATTR"),
    (200, "EDOOFUS"),
    (201, "EJUSTRETURN"),
    (202, "ENOIOCTL"),
    (203, "EDIRIOCTL"),
    (204, "EPWROFF"),
    (205, "EDEVERR"),
    (206, "EBADEXEC"),
    (207, "EBADARCH"),
    (208, "ESHLIBVERS"),
    (209, "EBADMACHO"),
    (210, "EPOLICY"),
    (211, "EDOTDOT"),
    (212, "EUCLEAN"),
    (213, "ENOTNAM"),
    (214, "ENAVAIL"),
    (215, "EISNAM"),
    (216, "EREMOTEIO"),
    (217, "ENOMEDIUM"),
    (218, "EMEDIUMTYPE"),
    (219, "ENOKEY"),
    (220, "EKEYEXPIRED"),
    (221, "EKEYREVOKED"),
    (222, "EKEYREJECTED"),
    (223, "ENOTCAPABLE"),
    (224, "ECAPMODE"),
)


def _local(name: str) -> int | None:
    if name == "ESUCCESS":
        return 0
    v = getattr(_errno, name, None)
    return v if isinstance(v, int) else None


_BSM_TO_LOCAL: dict[int, int] = {}
_LOCAL_TO_BSM: dict[int, int] = {}
for _bsm, _name in BSM_ERRNO_NAMES:
    _loc = _local(_name)
    if _loc is None:
        continue
    _BSM_TO_LOCAL.setdefault(_bsm, _loc)
    _LOCAL_TO_BSM.setdefault(_loc, _bsm)


def errno_to_bsm(linux_errno: int) -> int:
    """Linux errno -> BSM errno byte; unmapped values give 250 (unknown).

    Negative kernel-style values (``-ENOENT``) are accepted as well.
    """
    return _LOCAL_TO_BSM.get(abs(linux_errno), BSM_ERRNO_UNKNOWN)


def bsm_to_errno(bsm: int) -> int | None:
    """BSM errno byte -> Linux errno, or ``None`` when Linux has no equivalent."""
    return _BSM_TO_LOCAL.get(bsm)
