package images

import "strings"

// The agent image: OpenCode, the tools a coding agent runs (a POSIX shell
// and the usual utilities from busybox, git, ripgrep) and the C library
// they need, all pinned. It is built from two kinds of inputs besides the
// distroless-equivalent base and one Go binary (the agent-opencode
// launcher): an npm package holding OpenCode's self-contained binary, and
// Debian packages unpacked into a layer. Nothing is installed at build time
// by a package manager: each file is fetched by exact version and checked
// against the checksum written here before a byte of it is used.

// NPMPackage is one npm package, pinned by version and integrity.
type NPMPackage struct {
	Name    string
	Version string
	// Integrity is the package's dist.integrity ("sha512-<base64>").
	Integrity string
}

// Spec is "name@version", the argument of npm pack.
func (p NPMPackage) Spec() string { return p.Name + "@" + p.Version }

// TarballURL is where the public npm registry serves the package.
func (p NPMPackage) TarballURL() string {
	base := p.Name
	if i := strings.LastIndex(base, "/"); i >= 0 {
		base = base[i+1:]
	}
	return "https://registry.npmjs.org/" + p.Name + "/-/" + base + "-" + p.Version + ".tgz"
}

// DebianPackage is one Debian binary package, pinned by version and SHA256
// as the archive's Packages index lists it.
type DebianPackage struct {
	Name    string
	Version string
	// Archive is "debian" or "debian-security", where Filename is found.
	Archive string
	// Filename is the path of the .deb in the archive ("pool/main/...").
	Filename string
	SHA256   string
}

// URL is where the public Debian mirror serves the package.
func (p DebianPackage) URL() string {
	return "https://deb.debian.org/" + p.Archive + "/" + p.Filename
}

// OpenCodeVersion is the OpenCode release the agent image carries: the
// newest one the npm registry serves for both linux/amd64 and linux/arm64
// (glibc builds).
const OpenCodeVersion = "1.18.18"

// OpenCodeBinary is where OpenCode is in the agent image.
const OpenCodeBinary = "/usr/local/bin/opencode"

// OpenCodeNPM is OpenCode's npm package per architecture; each holds one
// self-contained binary at package/bin/opencode.
var OpenCodeNPM = map[string]NPMPackage{
	"amd64": {Name: "opencode-linux-x64", Version: OpenCodeVersion, Integrity: "sha512-WmeUnhljYJ252wywKTiW4bNDzsas2njpjPUEh0jM6HKNI4vFxJtREtzaWViY4AKEAcOkLWT8Ll17ixvcHz3AnA=="},
	"arm64": {Name: "opencode-linux-arm64", Version: OpenCodeVersion, Integrity: "sha512-e8D3g0qJEIzawEg2+ygW3vkZjAYL2ssyAx4GbihjwXwZFvlZZy5zRWWzdz5KLBoHSTl0FB73vNtnNeXONyHpVQ=="},
}

// AgentDebianPackages are the Debian 12 (bookworm) packages unpacked into
// the agent image, per architecture: glibc (which OpenCode, git and
// ripgrep link against), busybox (sh and the common utilities), git and
// ripgrep, and the libraries they load, the closure of their Depends.
// Left out on purpose: perl, liberror-perl and git-man (only git's
// Perl-based commands such as send-email and svn need them) and the
// packaging machinery (dpkg, debconf). CA certificates come from the base.
var AgentDebianPackages = map[string][]DebianPackage{
	"amd64": {
		{Name: "busybox", Version: "1:1.35.0-4+deb12u1+b1", Archive: "debian", Filename: "pool/main/b/busybox/busybox_1.35.0-4+deb12u1+b1_amd64.deb", SHA256: "4b355fad07d4fe1f5aa282e949281f8dcb7bcdebb023d7e40f4f8fe475e21e29"},
		{Name: "gcc-12-base", Version: "12.2.0-14+deb12u1", Archive: "debian", Filename: "pool/main/g/gcc-12/gcc-12-base_12.2.0-14+deb12u1_amd64.deb", SHA256: "1896a2aacf4ad681ff5eacc24a5b0ca4d5d9c9b9c9e4b6de5197bc1e116ea619"},
		{Name: "git", Version: "1:2.39.5-0+deb12u3", Archive: "debian", Filename: "pool/main/g/git/git_2.39.5-0+deb12u3_amd64.deb", SHA256: "637a85ddd6247fab13bdd0592f2f39aff04ce4dbf0655d3ab553ac359a38ce6f"},
		{Name: "libbrotli1", Version: "1.0.9-2+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/b/brotli/libbrotli1_1.0.9-2+deb12u1_amd64.deb", SHA256: "e27b3d655fa6fadd7a56f706687e94573c0af68b7d6df394a32a381a3a6c6d8b"},
		{Name: "libc6", Version: "2.36-9+deb12u14", Archive: "debian", Filename: "pool/main/g/glibc/libc6_2.36-9+deb12u14_amd64.deb", SHA256: "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf"},
		{Name: "libcom-err2", Version: "1.47.0-2+b2", Archive: "debian", Filename: "pool/main/e/e2fsprogs/libcom-err2_1.47.0-2+b2_amd64.deb", SHA256: "a2bac7015e78fbc0c504df3e441f3a22292f1d2d77f9ccda760057f3690e22f2"},
		{Name: "libcurl3-gnutls", Version: "7.88.1-10+deb12u15", Archive: "debian", Filename: "pool/main/c/curl/libcurl3-gnutls_7.88.1-10+deb12u15_amd64.deb", SHA256: "bf430ecf80f7808704e0187cddc582fd57fc98789ea356d4797651edad387ef3"},
		{Name: "libdb5.3", Version: "5.3.28+dfsg2-1", Archive: "debian", Filename: "pool/main/d/db5.3/libdb5.3_5.3.28+dfsg2-1_amd64.deb", SHA256: "7dc5127b8dd0da80e992ba594954c005ae4359d839a24eb65d0d8129b5235c84"},
		{Name: "libexpat1", Version: "2.5.0-1+deb12u5", Archive: "debian-security", Filename: "pool/updates/main/e/expat/libexpat1_2.5.0-1+deb12u5_amd64.deb", SHA256: "cae5ded666d8573dd33060bc66fbac21eea8b101a6b56e2af8bd590fcfa65d79"},
		{Name: "libffi8", Version: "3.4.4-1", Archive: "debian", Filename: "pool/main/libf/libffi/libffi8_3.4.4-1_amd64.deb", SHA256: "6d9f6c25c30efccce6d4bceaa48ea86c329a3432abb360a141f76ac223a4c34a"},
		{Name: "libgcc-s1", Version: "12.2.0-14+deb12u1", Archive: "debian", Filename: "pool/main/g/gcc-12/libgcc-s1_12.2.0-14+deb12u1_amd64.deb", SHA256: "3016e62cb4b7cd8038822870601f5ed131befe942774d0f745622cc77d8a88f7"},
		{Name: "libgmp10", Version: "2:6.2.1+dfsg1-1.1", Archive: "debian", Filename: "pool/main/g/gmp/libgmp10_6.2.1+dfsg1-1.1_amd64.deb", SHA256: "187aedef2ed763f425c1e523753b9719677633c7eede660401739e9c893482bd"},
		{Name: "libgnutls30", Version: "3.7.9-2+deb12u7", Archive: "debian", Filename: "pool/main/g/gnutls28/libgnutls30_3.7.9-2+deb12u7_amd64.deb", SHA256: "30abec8c824feb1d2d7e9000a34083cccd19d139625e1b21547e3ac53b922f8e"},
		{Name: "libgssapi-krb5-2", Version: "1.20.1-2+deb12u5", Archive: "debian", Filename: "pool/main/k/krb5/libgssapi-krb5-2_1.20.1-2+deb12u5_amd64.deb", SHA256: "d8b87aea91b956b416c01a28c44ff6228315ae3b73de40acddac3dc5043607d2"},
		{Name: "libhogweed6", Version: "3.8.1-2", Archive: "debian", Filename: "pool/main/n/nettle/libhogweed6_3.8.1-2_amd64.deb", SHA256: "ed8185c28b2cb519744a5a462dcd720d3b332c9b88a1d0002eac06dc8550cb94"},
		{Name: "libidn2-0", Version: "2.3.3-1+b1", Archive: "debian", Filename: "pool/main/libi/libidn2/libidn2-0_2.3.3-1+b1_amd64.deb", SHA256: "d50716d5824083d667427817d506b45d3f59dc77e1ca52de000f3f62d4918afa"},
		{Name: "libk5crypto3", Version: "1.20.1-2+deb12u5", Archive: "debian", Filename: "pool/main/k/krb5/libk5crypto3_1.20.1-2+deb12u5_amd64.deb", SHA256: "7b6e47d15c5c9cdcd456137533d8308aeba608a54cec73b28bd59bfc4b54cf06"},
		{Name: "libkeyutils1", Version: "1.6.3-2", Archive: "debian", Filename: "pool/main/k/keyutils/libkeyutils1_1.6.3-2_amd64.deb", SHA256: "cfac89e6a7a54ff3c6a4f843310e25efeddaa771baeae470bd98bd588c373563"},
		{Name: "libkrb5-3", Version: "1.20.1-2+deb12u5", Archive: "debian", Filename: "pool/main/k/krb5/libkrb5-3_1.20.1-2+deb12u5_amd64.deb", SHA256: "c90801be09701af221b54dd502a59cb378b7284ff31e480738baca317d2f7653"},
		{Name: "libkrb5support0", Version: "1.20.1-2+deb12u5", Archive: "debian", Filename: "pool/main/k/krb5/libkrb5support0_1.20.1-2+deb12u5_amd64.deb", SHA256: "8b9c05f2d8d461a10d657b118f572af5bf8fd6c8f93dcef81e852c5ab0f428ab"},
		{Name: "libldap-2.5-0", Version: "2.5.13+dfsg-5", Archive: "debian", Filename: "pool/main/o/openldap/libldap-2.5-0_2.5.13+dfsg-5_amd64.deb", SHA256: "4b6c30f6554149c594628d945edc6003f0eea8d0cc1341638c0e71375db147ed"},
		{Name: "libnettle8", Version: "3.8.1-2", Archive: "debian", Filename: "pool/main/n/nettle/libnettle8_3.8.1-2_amd64.deb", SHA256: "45922e6e289ffd92f0f92d2bb9159e84236ff202d552a461bf10e5335b3f0261"},
		{Name: "libnghttp2-14", Version: "1.52.0-1+deb12u3", Archive: "debian", Filename: "pool/main/n/nghttp2/libnghttp2-14_1.52.0-1+deb12u3_amd64.deb", SHA256: "5a5736cee57e51c1baed869979e6ecdbc6495e939e33203d6cfe3b6e5a149e3f"},
		{Name: "libp11-kit0", Version: "0.24.1-2", Archive: "debian", Filename: "pool/main/p/p11-kit/libp11-kit0_0.24.1-2_amd64.deb", SHA256: "251330faddbf013f060fcdb41f4b0c037c8a6e89ba7c09b04bfcc4e3f0807b22"},
		{Name: "libpcre2-8-0", Version: "10.42-1+deb12u2", Archive: "debian-security", Filename: "pool/updates/main/p/pcre2/libpcre2-8-0_10.42-1+deb12u2_amd64.deb", SHA256: "d2f7edfcc7689b9e0761c2742cc824ac86a20768bc5e8057818dc6875291fe76"},
		{Name: "libpsl5", Version: "0.21.2-1", Archive: "debian", Filename: "pool/main/libp/libpsl/libpsl5_0.21.2-1_amd64.deb", SHA256: "4f0d35610204e4e754b057748719744114621f2f6f4202d846c314860a981afb"},
		{Name: "librtmp1", Version: "2.4+20151223.gitfa8646d.1-2+b2", Archive: "debian", Filename: "pool/main/r/rtmpdump/librtmp1_2.4+20151223.gitfa8646d.1-2+b2_amd64.deb", SHA256: "e1f69020dc2c466e421ec6a58406b643be8b5c382abf0f8989011c1d3df91c87"},
		{Name: "libsasl2-2", Version: "2.1.28+dfsg-10+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/c/cyrus-sasl2/libsasl2-2_2.1.28+dfsg-10+deb12u1_amd64.deb", SHA256: "d6f20408e2be92ebd9f5e3b1c1935b075efb3f03abb5f48f7b991a0ad3e2d6a5"},
		{Name: "libsasl2-modules-db", Version: "2.1.28+dfsg-10+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/c/cyrus-sasl2/libsasl2-modules-db_2.1.28+dfsg-10+deb12u1_amd64.deb", SHA256: "6c86ca8fe9a7d652e618874b8753b4b6ec6b42ed7649b3f388e38d0a99047ba5"},
		{Name: "libssh2-1", Version: "1.10.0-3+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/libs/libssh2/libssh2-1_1.10.0-3+deb12u1_amd64.deb", SHA256: "fff72a194e493f88e100a2567e22472bb4ab828d429c2956965c6f2f134f1b3a"},
		{Name: "libssl3", Version: "3.0.22-1~deb12u2", Archive: "debian-security", Filename: "pool/updates/main/o/openssl/libssl3_3.0.22-1~deb12u2_amd64.deb", SHA256: "cb4784740daa9b3b0eaea2b444bbefa686794afbbf3d678d238c1fd9875f2efd"},
		{Name: "libtasn1-6", Version: "4.19.0-2+deb12u1", Archive: "debian", Filename: "pool/main/libt/libtasn1-6/libtasn1-6_4.19.0-2+deb12u1_amd64.deb", SHA256: "2c27c613b69be248d09432839ea3d3382f6ee27fabaa65987aa2d884cd00afda"},
		{Name: "libunistring2", Version: "1.0-2", Archive: "debian", Filename: "pool/main/libu/libunistring/libunistring2_1.0-2_amd64.deb", SHA256: "d466bbfe011d764d793c1d9d777cad9c7cf65b938e11598f27408171ad95a951"},
		{Name: "libzstd1", Version: "1.5.4+dfsg2-5+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/libz/libzstd/libzstd1_1.5.4+dfsg2-5+deb12u1_amd64.deb", SHA256: "67dc1ee693e5c22b1a2be2bb70d8244b040836ce3f5dd79e006f7806bc3d9f1c"},
		{Name: "ripgrep", Version: "13.0.0-4+b2", Archive: "debian", Filename: "pool/main/r/rust-ripgrep/ripgrep_13.0.0-4+b2_amd64.deb", SHA256: "feba1aea6022d84c67293686fe82132f7283d3c485a2cbd5af5c0e210615ecc2"},
		{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", Archive: "debian", Filename: "pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_amd64.deb", SHA256: "d7dd1d1411fedf27f5e27650a6eff20ef294077b568f4c8c5e51466dc7c08ce4"},
	},
	"arm64": {
		{Name: "busybox", Version: "1:1.35.0-4+deb12u1+b1", Archive: "debian", Filename: "pool/main/b/busybox/busybox_1.35.0-4+deb12u1+b1_arm64.deb", SHA256: "a745b681c0c52e4e0f028e0dab7b85078de1199c1d86c7b4c12502061c24f297"},
		{Name: "gcc-12-base", Version: "12.2.0-14+deb12u1", Archive: "debian", Filename: "pool/main/g/gcc-12/gcc-12-base_12.2.0-14+deb12u1_arm64.deb", SHA256: "674cf6cba6d432bd200c45fe866c1652c7a53523cc2e7a613e05bc4abf7b5440"},
		{Name: "git", Version: "1:2.39.5-0+deb12u3", Archive: "debian", Filename: "pool/main/g/git/git_2.39.5-0+deb12u3_arm64.deb", SHA256: "435176549a9f5c8bbadaa126b64a036b38ea34ad9f3eb128dc40b8407a5b5620"},
		{Name: "libbrotli1", Version: "1.0.9-2+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/b/brotli/libbrotli1_1.0.9-2+deb12u1_arm64.deb", SHA256: "131e62b9708da9aea88be990d275cb5c7b119e40beccf174c23ac8dc7246bb0f"},
		{Name: "libc6", Version: "2.36-9+deb12u14", Archive: "debian", Filename: "pool/main/g/glibc/libc6_2.36-9+deb12u14_arm64.deb", SHA256: "01f4330719fd4f65580e16ea5a0527f372fca750e8f588d26deaf09f2d3b1cf4"},
		{Name: "libcom-err2", Version: "1.47.0-2+b2", Archive: "debian", Filename: "pool/main/e/e2fsprogs/libcom-err2_1.47.0-2+b2_arm64.deb", SHA256: "36c15f933a965b50f4c9558d792d9556934c84e532703935d8ae7e69dd3fa863"},
		{Name: "libcurl3-gnutls", Version: "7.88.1-10+deb12u15", Archive: "debian", Filename: "pool/main/c/curl/libcurl3-gnutls_7.88.1-10+deb12u15_arm64.deb", SHA256: "053f0518249c0be7f476b73b28d9c9922ea5597d744e86736f89ced17e4a1ec1"},
		{Name: "libdb5.3", Version: "5.3.28+dfsg2-1", Archive: "debian", Filename: "pool/main/d/db5.3/libdb5.3_5.3.28+dfsg2-1_arm64.deb", SHA256: "344367608d622298a3d916f4cee3dc3173286f3b21f8f497ab21e7178ba930f9"},
		{Name: "libexpat1", Version: "2.5.0-1+deb12u5", Archive: "debian-security", Filename: "pool/updates/main/e/expat/libexpat1_2.5.0-1+deb12u5_arm64.deb", SHA256: "4a733e7f636de4a4483e3e5d7b02dc8e788b115361a04dd58df89461ce2ae65a"},
		{Name: "libffi8", Version: "3.4.4-1", Archive: "debian", Filename: "pool/main/libf/libffi/libffi8_3.4.4-1_arm64.deb", SHA256: "80b5c36177dc0e29d531c7eddbed3cc7355cb490e49f8cfa5959572d161f27b3"},
		{Name: "libgcc-s1", Version: "12.2.0-14+deb12u1", Archive: "debian", Filename: "pool/main/g/gcc-12/libgcc-s1_12.2.0-14+deb12u1_arm64.deb", SHA256: "576926b283613db80168ddf76380a3bd877602778cf0d226caa7bfbfa71eacf3"},
		{Name: "libgmp10", Version: "2:6.2.1+dfsg1-1.1", Archive: "debian", Filename: "pool/main/g/gmp/libgmp10_6.2.1+dfsg1-1.1_arm64.deb", SHA256: "9906387c1dd806518c915bd8616d072c741061d7fa26b222e52763456060b31a"},
		{Name: "libgnutls30", Version: "3.7.9-2+deb12u7", Archive: "debian", Filename: "pool/main/g/gnutls28/libgnutls30_3.7.9-2+deb12u7_arm64.deb", SHA256: "84f7f70084c9179d6670f4a6ebdf32adc36c6e4741a3a118104377e18cfa977f"},
		{Name: "libgssapi-krb5-2", Version: "1.20.1-2+deb12u5", Archive: "debian", Filename: "pool/main/k/krb5/libgssapi-krb5-2_1.20.1-2+deb12u5_arm64.deb", SHA256: "a00678963f692a929312968f19b77a61a8fc0011690d7dc909a8a2c4810fc7b3"},
		{Name: "libhogweed6", Version: "3.8.1-2", Archive: "debian", Filename: "pool/main/n/nettle/libhogweed6_3.8.1-2_arm64.deb", SHA256: "e653a1a7e5a44be0f7b6443dc6ac865d2504e49149660fc253655245965e157f"},
		{Name: "libidn2-0", Version: "2.3.3-1+b1", Archive: "debian", Filename: "pool/main/libi/libidn2/libidn2-0_2.3.3-1+b1_arm64.deb", SHA256: "12a3efc056671bf1c1bed4c3444c2559c8d5e0c158a13316fc728f263b83ddc4"},
		{Name: "libk5crypto3", Version: "1.20.1-2+deb12u5", Archive: "debian", Filename: "pool/main/k/krb5/libk5crypto3_1.20.1-2+deb12u5_arm64.deb", SHA256: "8ae2c31cde0b3e6f80c573a495b0f90bf6d9efb4455d900728278bb54d9092e5"},
		{Name: "libkeyutils1", Version: "1.6.3-2", Archive: "debian", Filename: "pool/main/k/keyutils/libkeyutils1_1.6.3-2_arm64.deb", SHA256: "aac46cb6faec4e737502b3c2290b7b02f8ba04e8accd5af7fd07934df0c867b1"},
		{Name: "libkrb5-3", Version: "1.20.1-2+deb12u5", Archive: "debian", Filename: "pool/main/k/krb5/libkrb5-3_1.20.1-2+deb12u5_arm64.deb", SHA256: "c3c7227f5db903a7a8b8936d47d1d79643edcda36365c4c992e1a96bcc2d4c7e"},
		{Name: "libkrb5support0", Version: "1.20.1-2+deb12u5", Archive: "debian", Filename: "pool/main/k/krb5/libkrb5support0_1.20.1-2+deb12u5_arm64.deb", SHA256: "3043fd4a54b945a1b503170749527f825dcfc7add2f8bf5abb4a329deeb48f4a"},
		{Name: "libldap-2.5-0", Version: "2.5.13+dfsg-5", Archive: "debian", Filename: "pool/main/o/openldap/libldap-2.5-0_2.5.13+dfsg-5_arm64.deb", SHA256: "71e6ae4291a20db999c62cd0a4f30a92a799c46b99205d5e787d4acd7c343b91"},
		{Name: "libnettle8", Version: "3.8.1-2", Archive: "debian", Filename: "pool/main/n/nettle/libnettle8_3.8.1-2_arm64.deb", SHA256: "c945ff210df69cf7b95e935b8fa936e81c1c1f475355e3d5db83510b174f0cd6"},
		{Name: "libnghttp2-14", Version: "1.52.0-1+deb12u3", Archive: "debian", Filename: "pool/main/n/nghttp2/libnghttp2-14_1.52.0-1+deb12u3_arm64.deb", SHA256: "7767833033739adb2e2e374f2c4b36134d9f36fcdfe8e2aab7029bf850146da9"},
		{Name: "libp11-kit0", Version: "0.24.1-2", Archive: "debian", Filename: "pool/main/p/p11-kit/libp11-kit0_0.24.1-2_arm64.deb", SHA256: "d1f1f55023e9fc085b9ebfc9c4113d2d2dab2dc6b81a337f274b75c95ad8dc0a"},
		{Name: "libpcre2-8-0", Version: "10.42-1+deb12u2", Archive: "debian-security", Filename: "pool/updates/main/p/pcre2/libpcre2-8-0_10.42-1+deb12u2_arm64.deb", SHA256: "8498d2c0bd6747dfc2fc6eec62774a86967079555f7043d5a7b78ee4efbbc0fb"},
		{Name: "libpsl5", Version: "0.21.2-1", Archive: "debian", Filename: "pool/main/libp/libpsl/libpsl5_0.21.2-1_arm64.deb", SHA256: "90a68e4a6d9eb95abee32595762dbf67974f13c158e4ce4a05c7c2b54440db73"},
		{Name: "librtmp1", Version: "2.4+20151223.gitfa8646d.1-2+b2", Archive: "debian", Filename: "pool/main/r/rtmpdump/librtmp1_2.4+20151223.gitfa8646d.1-2+b2_arm64.deb", SHA256: "a3a1a6e4b02bcd3254e932b1972ed744082fd7dd5cc1545eec3dd3d539ce6c93"},
		{Name: "libsasl2-2", Version: "2.1.28+dfsg-10+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/c/cyrus-sasl2/libsasl2-2_2.1.28+dfsg-10+deb12u1_arm64.deb", SHA256: "b3686e0815d99e5ca6ce9234e486ca0ecd373d491e34457c3b9cba5c6dbba287"},
		{Name: "libsasl2-modules-db", Version: "2.1.28+dfsg-10+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/c/cyrus-sasl2/libsasl2-modules-db_2.1.28+dfsg-10+deb12u1_arm64.deb", SHA256: "37d5834fa07d30275b75dc1ec2ccf43f9ce55d0885bb846db7cf04c98da30ae5"},
		{Name: "libssh2-1", Version: "1.10.0-3+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/libs/libssh2/libssh2-1_1.10.0-3+deb12u1_arm64.deb", SHA256: "72db6dc64cb0dd4c8a6b0f1b998063338956a7b3eb8a27125beb27bee0d7cc46"},
		{Name: "libssl3", Version: "3.0.22-1~deb12u2", Archive: "debian-security", Filename: "pool/updates/main/o/openssl/libssl3_3.0.22-1~deb12u2_arm64.deb", SHA256: "3d04ecd8d0f57fed50d205abaeedfcc84c1960073ea085719c00add44b0ccd7f"},
		{Name: "libtasn1-6", Version: "4.19.0-2+deb12u1", Archive: "debian", Filename: "pool/main/libt/libtasn1-6/libtasn1-6_4.19.0-2+deb12u1_arm64.deb", SHA256: "7e80513007e8a71b5e737d3307dedbb06712f9cfed05ec2fad6fc00de460cc5f"},
		{Name: "libunistring2", Version: "1.0-2", Archive: "debian", Filename: "pool/main/libu/libunistring/libunistring2_1.0-2_arm64.deb", SHA256: "05b0b7700bfe269ff7af61f45e92055d7ef4c532c9584e4e2a352cf0bd4de5b1"},
		{Name: "libzstd1", Version: "1.5.4+dfsg2-5+deb12u1", Archive: "debian-security", Filename: "pool/updates/main/libz/libzstd/libzstd1_1.5.4+dfsg2-5+deb12u1_arm64.deb", SHA256: "2032e10b4dd01ec97d157aa1f6474efd6320bb70c6a7cae003e1b8eba3b566f8"},
		{Name: "ripgrep", Version: "13.0.0-4+b2", Archive: "debian", Filename: "pool/main/r/rust-ripgrep/ripgrep_13.0.0-4+b2_arm64.deb", SHA256: "82bd2ff67cedf892c1906d7ecd2831605ec1f8ad74825f576f5519a9c82a02a3"},
		{Name: "zlib1g", Version: "1:1.2.13.dfsg-1", Archive: "debian", Filename: "pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_arm64.deb", SHA256: "52b8b8a145bbe1956bba82034f77022cbef0c3d0885c9e32d9817a7932fe1913"},
	},
}

// AgentOpenCode is the agent image that runs OpenCode on a Task. Its only
// Go binary is the launcher (agent-opencode), its entrypoint.
var AgentOpenCode = Image{
	Name:        "agent-opencode",
	MainPackage: Module + "/agentimages/cmd/agent-opencode",
	Description: "KubeOpenCode agent: OpenCode " + OpenCodeVersion + " with git, ripgrep and a shell, run on a Task's task.md",
	Agent:       true,
}

// Environment of the agent image. OpenCode keeps its data, state and cache
// under /tmp (writable also with a read-only root filesystem, where the
// Job mounts an emptyDir there) and reads its configuration from
// AgentConfigDir, which the image ships read-only; the OPENCODE_DISABLE_*
// switches stop every background download and upload, so a run talks only
// to the model endpoint it is configured with.
const (
	AgentHome      = "/tmp/home"
	AgentConfigDir = "/etc/opencode/xdg"
)

// AgentEnv is added to the base environment of the agent image.
var AgentEnv = []string{
	"HOME=" + AgentHome,
	"XDG_CONFIG_HOME=" + AgentConfigDir,
	"XDG_DATA_HOME=" + AgentHome + "/.local/share",
	"XDG_STATE_HOME=" + AgentHome + "/.local/state",
	"XDG_CACHE_HOME=" + AgentHome + "/.cache",
	"OPENCODE_DISABLE_AUTOUPDATE=1",
	"OPENCODE_DISABLE_MODELS_FETCH=1",
	"OPENCODE_DISABLE_LSP_DOWNLOAD=1",
	"OPENCODE_DISABLE_SHARE=1",
	"GIT_SSL_CAINFO=/etc/ssl/certs/ca-certificates.crt",
}

// AgentOpenCodeConfig is the image's OpenCode configuration
// (AgentConfigDir/opencode/opencode.json): every tool is allowed without
// asking, since nobody is there to answer, and no update check runs. An
// Agent adds its provider and model with OPENCODE_CONFIG_CONTENT, which
// OpenCode applies last.
const AgentOpenCodeConfig = `{
  "$schema": "https://opencode.ai/config.json",
  "autoupdate": false,
  "share": "disabled",
  "permission": {
    "edit": "allow",
    "bash": "allow",
    "webfetch": "allow",
    "external_directory": "allow",
    "doom_loop": "allow"
  }
}
`
