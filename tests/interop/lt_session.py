"""The libtorrent session every test and benchmark script uses: loopback only, TCP only.

DHT, LSD, UPnP and NAT-PMP are off so nothing leaves the machine; uTP is off because bitseed
speaks TCP and libtorrent would try uTP first and crawl.
"""
import os

import libtorrent as lt


def session(**extra):
    settings = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": 0,
    }
    settings.update(extra)
    return lt.session(settings)


def add(ses, save, ti=None, params=None, seed_mode=False):
    """Adds a torrent that starts at once (not auto-managed, which could queue it, and not
    paused) from a torrent_info, or from params already filled (a magnet link's); returns its
    handle. seed_mode: the content is known good, so no hash check."""
    if params is None:
        params = lt.add_torrent_params()
        params.ti = ti
    params.save_path = save
    if seed_mode:
        params.flags |= lt.torrent_flags.seed_mode
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(params)


def limits(up=0, down=0):
    """Rate limits that hold on loopback (0: none) and count BitTorrent messages, as bitseed's
    budget does, so a limit is the payload rate a bound like T_min assumes. libtorrent's default
    also charges its estimate of TCP/IP headers to them: LT_IP_OVERHEAD=1 keeps that."""
    return {
        "upload_rate_limit": up,
        "download_rate_limit": down,
        "ignore_limits_on_local_network": False,
        "rate_limit_ip_overhead": os.environ.get("LT_IP_OVERHEAD") == "1",
    }


# Encryption forced both ways, RC4 only: what clients set to "require encryption" run.
RC4_FORCED = {
    "out_enc_policy": int(lt.enc_policy.forced),
    "in_enc_policy": int(lt.enc_policy.forced),
    "allowed_enc_level": int(lt.enc_level.rc4),
}
