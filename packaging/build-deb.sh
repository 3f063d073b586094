#!/usr/bin/env bash
# Builds guardian_<version>_amd64.deb from this source tree.
#
#   packaging/build-deb.sh [--skip-build] [--no-lintian]
#
# Environment: SCRATCH (swift build --scratch-path, default .build-pkg-release),
# OUT_DIR (where the .deb goes, default $SCRATCH/deb).
#
# Steps: release build with the Swift runtime linked statically, strip;
# journald catalog (`guardian catalog`), man pages (swift-argument-parser's
# generate-manual), shell completions; assemble the tree; Depends from
# dpkg-shlibdeps; dpkg-deb --root-owner-group; lintian (must pass: no errors,
# no warnings except the overrides in packaging/lintian-overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PKG=$ROOT/packaging
export PATH=/opt/swift/usr/bin:$PATH

skip_build=0 run_lintian=1
for arg in "$@"; do
    case "$arg" in
        --skip-build) skip_build=1 ;;
        --no-lintian) run_lintian=0 ;;
        *) echo "usage: $0 [--skip-build] [--no-lintian]" >&2; exit 2 ;;
    esac
done

SCRATCH=${SCRATCH:-.build-pkg-release}
OUT_DIR=${OUT_DIR:-$SCRATCH/deb}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-deb: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
need dpkg-deb dpkg
need dpkg-shlibdeps dpkg-dev
need dpkg-gencontrol dpkg-dev
need strip binutils

VERSION=$(sed -n 's/.*static let string = "\([^"]*\)".*/\1/p' Sources/guardian/Version.swift)
[ -n "$VERSION" ] || { echo "build-deb: no version in Sources/guardian/Version.swift" >&2; exit 1; }
CHANGELOG_VERSION=$(dpkg-parsechangelog -l "$PKG/debian/changelog" -S Version)
if [ "$CHANGELOG_VERSION" != "$VERSION" ]; then
    echo "build-deb: Version.swift says $VERSION but packaging/debian/changelog's newest entry is $CHANGELOG_VERSION; add an entry (dch -v $VERSION -c packaging/debian/changelog)" >&2
    exit 1
fi
ARCH=$(dpkg --print-architecture)
# Reproducible: every timestamp comes from the newest changelog entry.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$PKG/debian/changelog" -S Timestamp)
export SOURCE_DATE_EPOCH

# 1. Binaries ---------------------------------------------------------------
# -z now: full RELRO (lintian's hardening-no-bindnow).
BUILD=(swift build -c release --static-swift-stdlib -Xlinker -z -Xlinker now --scratch-path "$SCRATCH")
if [ "$skip_build" = 0 ]; then
    echo "== swift build -c release --static-swift-stdlib (guardian, generate-manual)"
    "${BUILD[@]}" --product guardian
    # swift-argument-parser's man page generator (an executable target of the
    # dependency; SwiftPM builds it as an implicit product).
    "${BUILD[@]}" --product generate-manual
fi
BIN_DIR=$("${BUILD[@]}" --show-bin-path)
[ -x "$BIN_DIR/guardian" ] || { echo "build-deb: $BIN_DIR/guardian is missing (run without --skip-build)" >&2; exit 1; }

WORK=$OUT_DIR/work
STAGE=$WORK/guardian
rm -rf "$WORK"
mkdir -p "$STAGE/DEBIAN" "$WORK/debian"

install -D -m 0755 "$BIN_DIR/guardian" "$STAGE/usr/bin/guardian"
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$STAGE/usr/bin/guardian"
G=$STAGE/usr/bin/guardian

# 2. Files generated from the binary ------------------------------------------
"$G" catalog --check
install -d "$STAGE/usr/lib/systemd/catalog"
"$G" catalog > "$STAGE/usr/lib/systemd/catalog/guardian.catalog"

MAN=$WORK/man
mkdir -p "$MAN"
# One page, guardian(1), with every subcommand that --help lists (hidden
# helpers such as `catalog` are left out), plus FILES, ENVIRONMENT, EXAMPLES
# and SEE ALSO from packaging/guardian-man-extra.mdoc.
printf '#!/bin/sh\nexec python3 %s %s "$@"\n' "$PKG/dump-help-visible.py" "$G" > "$WORK/guardian-visible"
chmod 0755 "$WORK/guardian-visible"
"$BIN_DIR/generate-manual" "$WORK/guardian-visible" --section 1 \
    --date "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)" --output-directory "$MAN" >/dev/null
[ -f "$MAN/guardian.1" ] || { echo "build-deb: generate-manual wrote no guardian.1 (got: $(ls "$MAN"))" >&2; exit 1; }
{ cat "$MAN/guardian.1"; echo; cat "$PKG/guardian-man-extra.mdoc"; } > "$MAN/guardian.full.1"
install -d "$STAGE/usr/share/man/man1"
gzip -9n < "$MAN/guardian.full.1" > "$STAGE/usr/share/man/man1/guardian.1.gz"

install -d "$STAGE/usr/share/bash-completion/completions" "$STAGE/usr/share/zsh/vendor-completions" \
    "$STAGE/usr/share/fish/vendor_completions.d"
# (bash-completion sources the file: no #! line.)
"$G" --generate-completion-script bash | sed '1{/^#!/d}' > "$STAGE/usr/share/bash-completion/completions/guardian"
"$G" --generate-completion-script zsh > "$STAGE/usr/share/zsh/vendor-completions/_guardian"
"$G" --generate-completion-script fish > "$STAGE/usr/share/fish/vendor_completions.d/guardian.fish"

# 3. Files from packaging/ ------------------------------------------------------
install -D -m 0644 "$PKG/guardian.service" "$STAGE/lib/systemd/system/guardian.service"
install -D -m 0755 "$PKG/guardian-generator" "$STAGE/lib/systemd/system-generators/guardian-generator"
install -D -m 0644 "$PKG/guardian.sysusers" "$STAGE/usr/lib/sysusers.d/guardian.conf"
install -D -m 0644 "$PKG/guardian.yml" "$STAGE/etc/guardian/guardian.yml"
install -D -m 0644 "$PKG/50-guardian.rules" "$STAGE/etc/polkit-1/rules.d/50-guardian.rules"
install -D -m 0644 "$PKG/debian/copyright" "$STAGE/usr/share/doc/guardian/copyright"
install -D -m 0644 "$PKG/README.Debian" "$STAGE/usr/share/doc/guardian/README.Debian"
gzip -9n < "$PKG/debian/changelog" > "$STAGE/usr/share/doc/guardian/changelog.gz"
install -D -m 0644 "$PKG/lintian-overrides" "$STAGE/usr/share/lintian/overrides/guardian"

# The default configuration must load.
"$G" check-config --config "$STAGE/etc/guardian/guardian.yml" >/dev/null

for s in postinst prerm postrm; do install -m 0755 "$PKG/debian/$s" "$STAGE/DEBIAN/$s"; done
install -m 0644 "$PKG/debian/conffiles" "$STAGE/DEBIAN/conffiles"

# 4. Control file: Depends from the binary's shared libraries ------------------
cp "$PKG/debian/control" "$PKG/debian/changelog" "$WORK/debian/"
(
    cd "$WORK"
    dpkg-shlibdeps -Tdebian/substvars -e"guardian/usr/bin/guardian"
    dpkg-gencontrol -pguardian -Pguardian -Tdebian/substvars -cdebian/control -ldebian/changelog -fdebian/files
)
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$STAGE/DEBIAN/md5sums" "$STAGE/DEBIAN/control"

# Directories 0755, files 0644 unless set above; timestamps from the changelog.
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +

DEB=$OUT_DIR/guardian_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "== built $DEB ($(du -h "$DEB" | cut -f1))"
grep '^Depends:' "$STAGE/DEBIAN/control"

if [ "$run_lintian" = 1 ]; then
    need lintian lintian
    echo "== lintian"
    # Errors fail the build, and so do warnings (those that do not apply to a
    # package built outside Debian are overridden, with reasons, in
    # packaging/lintian-overrides).
    set +e
    report=$(lintian --fail-on error,warning --display-info --tag-display-limit 0 "$DEB" 2>&1)
    rc=$?
    set -e
    printf '%s\n' "$report" | grep -v 'running with root privileges is not recommended' || true
    [ "$rc" = 0 ] || { echo "build-deb: lintian failed (rc $rc)" >&2; exit 1; }
    echo "== lintian: no errors, no warnings"
fi
echo "$DEB"
