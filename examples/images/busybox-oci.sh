#!/bin/sh
# Writes an OCI image layout of a tiny web server made of the host's
# static busybox (Debian's busybox-static) to DIR: one layer, built
# offline from files already on this machine, so the example needs no
# registry. `make example-image` runs it and imports the result.
#
# usage: busybox-oci.sh DIR [REF]
set -eu
out=${1:?usage: busybox-oci.sh DIR [REF]}
ref=${2:-corral-example/busybox-web:1}
busybox=${BUSYBOX:-/bin/busybox}
ldd "$busybox" 2>&1 | grep -q 'not a dynamic executable' || {
	echo "busybox-oci.sh: $busybox is not a static busybox (apt-get install busybox-static)" >&2
	exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root/bin" "$root/etc" "$root/www" "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in sh httpd cat echo ls wget sleep id; do
	ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nwww:x:1000:1000:web server:/www:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nwww:x:1000:\n' >"$root/etc/group"
echo '<h1>hello from an image</h1>' >"$root/www/index.html"
chmod 1777 "$root/tmp"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
blobs=$out/blobs/sha256
mkdir -p "$blobs"
# Reproducible: sorted, root-owned, dated at the epoch.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$work/layer.tar" .
diff_id=$(sha "$work/layer.tar")
gzip -n -9 "$work/layer.tar"
layer=$(sha "$work/layer.tar.gz")
cp "$work/layer.tar.gz" "$blobs/$layer"

cat >"$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Entrypoint":["/bin/httpd","-f","-v"],"Cmd":["-p","8080","-h","/www"],"WorkingDir":"/www","User":"www"},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created_by":"examples/images/busybox-oci.sh"}]}
JSON
config=$(sha "$work/config.json")
cp "$work/config.json" "$blobs/$config"

cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$(size "$work/config.json")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer","size":$(size "$work/layer.tar.gz")}]}
JSON
manifest=$(sha "$work/manifest.json")
cp "$work/manifest.json" "$blobs/$manifest"

printf '{"imageLayoutVersion":"1.0.0"}\n' >"$out/oci-layout"
cat >"$out/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$(size "$work/manifest.json"),"annotations":{"org.opencontainers.image.ref.name":"$ref"},"platform":{"architecture":"amd64","os":"linux"}}]}
JSON
echo "$out: $ref (manifest sha256:$manifest)"
