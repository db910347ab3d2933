// Which relay this page works for. '' means the server that served this page (the relay serves
// www/ itself). When www/ is hosted elsewhere (e.g. Netlify), set the relay's origin here, e.g.
//   globalThis.GLOWWORM_CONFIG = { relay: 'https://relay.example.org' };
// and add that origin to connect-src in the Content-Security-Policy (see netlify.toml).
globalThis.GLOWWORM_CONFIG = { relay: '' };
