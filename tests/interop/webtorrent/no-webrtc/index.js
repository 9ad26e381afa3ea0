// No WebRTC in Node for the tests: simple-peer then reports WEBRTC_SUPPORT = false and
// WebTorrent uses TCP peers and web seeds only.
export const RTCPeerConnection = undefined
export const RTCSessionDescription = undefined
export const RTCIceCandidate = undefined
export default {}
