// The Glowworm widget loader, for partner sites. One tag on any page:
//
//   <script src="https://<glowworm site>/widget.js" data-partner="0x..." async></script>
//
// Optional: data-placement="inline" (default: where the tag is, or bottom-right when the tag is
// in <head>) | "bottom-right" | "bottom-left"; data-theme="auto" (default) | "light" | "dark";
// data-target="#css-selector" (inline, inside that element).
//
// It only draws a frame: the card is /widget.html on the Glowworm origin, in a sandboxed iframe,
// so this page cannot reach the contributor's key, press its buttons or forge its results, and
// its Web Worker runs on the Glowworm origin. Nothing computes until the visitor clicks inside
// the card. The card's events come back as DOM events on this script element (they bubble to
// document): 'glowworm:started', 'glowworm:stopped', 'glowworm:paused', 'glowworm:credited'
// (event.detail: {units, credited, balance, ...}), and 'glowworm:ready'. The page may also listen
// for the raw messages itself: window 'message' events from the Glowworm origin whose data is
// {source: 'glowworm', type, ...}. The page can ask the card to stop, never to start:
// window.glowworm.stop().
(() => {
  const script = document.currentScript
    ?? [...document.querySelectorAll('script[src][data-partner]')].find((s) => /\/widget\.js([?#]|$)/.test(s.src));
  if (!script || script.dataset.glowwormLoaded) return;
  script.dataset.glowwormLoaded = 'true';

  const base = new URL('.', script.src); // the Glowworm site, from this script's own URL
  const glowworm = base.origin;
  const pick = (value, allowed, fallback) => (allowed.includes(value) ? value : fallback);
  const theme = pick(script.dataset.theme, ['auto', 'light', 'dark'], 'auto');
  let placement = pick(script.dataset.placement, ['inline', 'bottom-right', 'bottom-left'], 'inline');

  const params = new URLSearchParams({ partner: script.dataset.partner ?? '', theme });
  const frame = document.createElement('iframe');
  // The fragment stays in the browser: the partner is not in any server's logs or referrers.
  frame.src = new URL(`widget.html#${params}`, base).href;
  frame.title = 'Glowworm: lend your GPU (nothing runs until you click)';
  // Scripts run on the Glowworm origin (its key store and worker); no navigation of this page,
  // no popups, no forms. WebGPU is delegated to the frame explicitly.
  frame.setAttribute('sandbox', 'allow-scripts allow-same-origin');
  frame.setAttribute('allow', 'webgpu');
  frame.setAttribute('referrerpolicy', 'strict-origin');
  Object.assign(frame.style, {
    width: '340px',
    maxWidth: '100%',
    height: '236px',
    border: '0',
    colorScheme: 'normal',
    display: 'block',
  });

  function place() {
    const target = script.dataset.target ? document.querySelector(script.dataset.target) : null;
    if (placement === 'inline' && !target && !document.body.contains(script)) placement = 'bottom-right';
    if (placement !== 'inline') {
      Object.assign(frame.style, {
        position: 'fixed',
        bottom: '16px',
        [placement === 'bottom-left' ? 'left' : 'right']: '16px',
        zIndex: '2147483000',
        boxShadow: '0 4px 18px rgb(0 0 0 / 0.25)',
        borderRadius: '10px',
      });
      document.body.append(frame);
    } else if (target) {
      target.append(frame);
    } else {
      script.after(frame);
    }
  }
  if (document.body) place();
  else document.addEventListener('DOMContentLoaded', place, { once: true });

  const EVENTS = ['ready', 'started', 'stopped', 'paused', 'credited'];
  window.addEventListener('message', (event) => {
    // Only the card this loader made, on the Glowworm origin.
    if (event.source !== frame.contentWindow || event.origin !== glowworm) return;
    const data = event.data;
    if (data?.source !== 'glowworm' || !EVENTS.includes(data.type)) return;
    const { source, type, ...detail } = data;
    script.dispatchEvent(new CustomEvent(`glowworm:${type}`, { detail, bubbles: true }));
  });

  window.glowworm = Object.freeze({
    /** Asks the card to stop computing (a page can stop it, never start it). */
    stop() {
      frame.contentWindow?.postMessage({ glowworm: 'stop' }, glowworm);
    },
    frame,
  });
})();
