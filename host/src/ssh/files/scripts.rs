//! The exec fallback's scripts, for `/bin/sh -c SCRIPT mcp-ssh-files ARGS`:
//! paths arrive as positional parameters, never inside the script text.
//! Every script starts with [`PRELUDE`]: `LC_ALL=C` (tool errors are read
//! by their English text), a mark on stderr (what the login shell's
//! start-up files wrote there comes before it, and is not the script's),
//! `st` (one `stat -c` or GNU `find -printf`
//! record), `rl` (a link target) and `h256` (sha256 by whichever tool
//! exists; status 2 when none does; its size as `$2` when the caller knows
//! it). For 4 MiB and more `h256` asks `openssl` first, once it hashes
//! `abc` right: it uses the CPU's SHA instructions where coreutils'
//! `sha256sum` does not (100 MiB in 0.12 s against 0.49 s on the bench
//! machine), but starts 3 ms slower, so smaller files keep `sha256sum`.
//! Exit statuses 10 to 18 are verdicts:
//! 10 not found (a write's parent), 11 permission denied, 12 is a
//! directory, 13 not a directory, 15 `if_match` conflict, 16 not a regular
//! file, 17 a tool is missing (stderr names it), 18 a short write.

pub(super) const PRELUDE: &str = r#"export LC_ALL=C
printf '\036mcp-ssh-stderr\036' >&2
die() { c=$1; shift; printf '%s\n' "$*" >&2; exit "$c"; }
st() {
  if command -v stat >/dev/null 2>&1; then
    r=$(stat $2 -c '%f %s %Y' -- "$1") || return 1; printf 'S %s\n' "$r"
  elif find / -maxdepth 0 -printf '' >/dev/null 2>&1; then
    case $1 in /*) q=$1;; *) q=./$1;; esac
    if [ -n "$2" ]; then o=-H; else o=-P; fi
    r=$(find $o "$q" -maxdepth 0 -printf '%y %m %s %T@') || return 1
    [ -n "$r" ] || return 1
    printf 'F %s\n' "$r"
  else die 17 'missing: stat (or GNU find with -printf)'; fi
}
rl() {
  if command -v readlink >/dev/null 2>&1; then readlink -- "$1"
  else case $1 in /*) q=$1;; *) q=./$1;; esac; find -P "$q" -maxdepth 0 -printf '%l\n'; fi
}
h256() {
  z=${2-}
  if [ -z "$z" ] && l=$(ls -Lln -- "$1" 2>/dev/null); then set -- "$1" $l; z=${6-}; fi
  if [ "${z:-0}" -ge 4194304 ] 2>/dev/null && command -v openssl >/dev/null 2>&1 \
    && k=$(printf abc | openssl dgst -sha256 2>/dev/null) \
    && [ "${k##*= }" = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ]; then
    r=$(openssl dgst -sha256 <"$1") || return 1; r=${r##*= }
  elif command -v sha256sum >/dev/null 2>&1; then r=$(sha256sum <"$1") || return 1
  elif command -v shasum >/dev/null 2>&1; then r=$(shasum -a 256 <"$1") || return 1
  elif command -v openssl >/dev/null 2>&1; then r=$(openssl dgst -sha256 <"$1") || return 1; r=${r##*= }
  else return 2; fi
  printf '%s\n' "${r%% *}"
}
"#;

pub(super) const STAT: &str = r#"st "$1" || exit 1
if [ -L "$1" ]; then rl "$1" || exit 1; fi"#;

pub(super) const READ: &str = r#"p=$1
st "$p" -L || exit 1
[ -d "$p" ] && die 12 'is a directory'
[ -f "$p" ] || die 16 'not a regular file'
[ -r "$p" ] || die 11 'permission denied'
command -v head >/dev/null 2>&1 || die 17 'missing: head'
if [ "$2" = 0 ]; then cat -- "$p"
elif [ -s "$p" ] || [ "$(head -c 1 -- "$p" | wc -c)" -gt 0 ]; then tail -c "+$4" -- "$p"
fi | head -c "$3""#;

pub(super) const DOWNLOAD: &str = r#"p=$1
st "$p" -L || exit 1
[ -d "$p" ] && die 12 'is a directory'
[ -f "$p" ] || die 16 'not a regular file'
[ -r "$p" ] || die 11 'permission denied'
exec cat -- "$p""#;

pub(super) const ENTRY: &str = r#"ent() { printf '%s\0' "$2"; st "$1" || printf 'X\n'; [ -L "$1" ] && rl "$1"; printf '\0'; }
"#;

pub(super) const LIST: &str = r#"d=$1 max=$2
st "$d" -L >/dev/null || exit 1
[ -d "$d" ] || die 13 'not a directory'
{ [ -r "$d" ] && [ -x "$d" ]; } || die 11 'permission denied'
case $d in */) b=$d;; *) b=$d/;; esac
n=0
for f in "$b"* "$b".[!.]* "$b"..?*; do { [ -e "$f" ] || [ -L "$f" ]; } && n=$((n + 1)); done
if [ "$n" -gt "$max" ]; then
  printf 'N %s\n' "$n"
  for f in "$b"* "$b".[!.]* "$b"..?*; do { [ -e "$f" ] || [ -L "$f" ]; } && printf '%s\0' "${f#"$b"}"; done
  exit 0
fi
printf 'C %s\n' "$n"
for f in "$b"* "$b".[!.]* "$b"..?*; do
  { [ -e "$f" ] || [ -L "$f" ]; } || continue
  ent "$f" "${f#"$b"}"
done"#;

pub(super) const STAT_MANY: &str = r#"b=$1; shift
printf 'C %s\n' $#
for n; do ent "$b$n" "$n"; done"#;

pub(super) const STAGE: &str = r#"umask 077
p=$1
case $p in */*) d=${p%/*}; d=${d:-/};; *) d=.;; esac
if [ ! -d "$d" ]; then
  if [ -e "$d" ] || [ -L "$d" ]; then die 13 'the parent is not a directory'
  elif [ "$2" = 1 ]; then mkdir -p -- "$d" || exit 1
  else die 10 'the parent does not exist'; fi
fi
[ -d "$p" ] && die 12 'is a directory'
case $d in /*) ;; *) d=./$d;; esac
t=$d/$4
trap 'exit 1' HUP INT TERM PIPE
k=1; trap '[ -z "$k" ] || rm -f -- "$t"' EXIT
(set -C; : >"$t") || { k=; exit 1; }
printf '%s\0' "$t"
cat >"$t" || exit 1
s=$(wc -c <"$t") || exit 1
s=$((s + 0))
[ "$s" = "$3" ] || die 18 "the remote file got $s bytes of $3"
if h=$(h256 "$t" "$s"); then printf 'H %s\n' "$h"; else printf 'H -\n'; fi
trap - EXIT"#;

pub(super) const COMMIT: &str = r#"t=$1 p=$2 m=$3 w=$4
fail() { rm -f -- "$t"; exit "$1"; }
[ -d "$p" ] && { rm -f -- "$t"; die 12 'is a directory'; }
if [ "$w" != - ]; then
  [ -e "$p" ] || { rm -f -- "$t"; die 15 'missing'; }
  h=$(h256 "$p"); r=$?
  [ $r = 2 ] && { rm -f -- "$t"; die 17 'missing: sha256sum, shasum or openssl (if_match needs one)'; }
  [ $r = 0 ] || fail 1
  [ "$h" = "$w" ] || { rm -f -- "$t"; die 15 'changed'; }
fi
e=0; { [ -e "$p" ] || [ -L "$p" ]; } && e=1
if [ "$m" = - ]; then
  m=644
  if [ -e "$p" ]; then
    r=$(st "$p" -L) || fail 1
    set -- $r
    case $1 in S) m=$(printf '%o' $((0x$2 & 4095)));; F) m=$3;; esac
  fi
fi
chmod "$m" "$t" || fail 1
mv -f -- "$t" "$p" || fail 1
printf 'E %s\n' "$e""#;

pub(super) const ABORT: &str = r#"rm -f -- "$1""#;

pub(super) const SHA: &str = r#"h=$(h256 "$1" "${2-}"); r=$?
[ $r = 2 ] && { echo -; exit 0; }
[ $r = 0 ] || exit 1
printf '%s\n' "$h""#;
