// The contributor's controls, shared by the page (app.js) and the partner widget (widget-app.js):
// intensity (the share of time the GPU is busy), pause while the tab is hidden, and pause on
// battery below a threshold where the Battery API exists. They run on the main thread, which
// sees the document's visibility and the battery, and tell the worker what to do with
// {type: 'settings', intensity, pausedBy} (see worker.js). Settings are kept in localStorage.
//
// Elements, found by id inside `root`: #intensity (range, percent) with #intensity-value,
// #pause-hidden (checkbox), #pause-battery (checkbox) with #battery-threshold (percent) and
// #battery-note (says when this browser has no Battery API).

const STORAGE_KEY = 'glowworm.settings';

/** Settings a browser starts with; `intensity` in percent. */
export const DEFAULTS = Object.freeze({ intensity: 100, pauseHidden: true, pauseBattery: true, batteryThreshold: 20 });

const clamp = (value, low, high, fallback) => {
  const n = Math.round(Number(value));
  return Number.isFinite(n) ? Math.min(high, Math.max(low, n)) : fallback;
};

function loadSettings(defaults) {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}') ?? {};
  } catch {
    // no storage (some private modes) or a damaged record: the defaults
  }
  return {
    intensity: clamp(saved.intensity, 10, 100, defaults.intensity),
    pauseHidden: typeof saved.pauseHidden === 'boolean' ? saved.pauseHidden : defaults.pauseHidden,
    pauseBattery: typeof saved.pauseBattery === 'boolean' ? saved.pauseBattery : defaults.pauseBattery,
    batteryThreshold: clamp(saved.batteryThreshold, 5, 100, defaults.batteryThreshold),
  };
}

/**
 * Binds the controls under `root` and calls `onChange({intensity, pausedBy})` whenever what the
 * worker should do changes: intensity as a fraction (0.1 to 1), pausedBy null, 'hidden' or
 * 'battery'. Returns {current()}: what the worker should do now.
 */
export function bindControls(root, onChange, defaults = DEFAULTS) {
  const $ = (id) => root.querySelector(`#${id}`);
  const el = {
    intensity: $('intensity'),
    intensityValue: $('intensity-value'),
    pauseHidden: $('pause-hidden'),
    pauseBattery: $('pause-battery'),
    threshold: $('battery-threshold'),
    batteryNote: $('battery-note'),
  };
  const settings = loadSettings(defaults);
  let battery = null; // a BatteryManager, once the browser gave one

  const save = () => {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(settings));
    } catch {
      // not kept: they still apply to this visit
    }
  };

  const pausedBy = () => {
    if (settings.pauseHidden && document.visibilityState === 'hidden') return 'hidden';
    if (settings.pauseBattery && battery && !battery.charging && battery.level * 100 < settings.batteryThreshold) {
      return 'battery';
    }
    return null;
  };

  const current = () => ({ intensity: settings.intensity / 100, pausedBy: pausedBy() });
  let last = '';
  const changed = () => {
    const now = current();
    const key = JSON.stringify(now);
    if (key !== last) {
      last = key;
      onChange(now);
    }
  };

  const draw = () => {
    el.intensity.value = String(settings.intensity);
    el.intensityValue.textContent = `${settings.intensity}%`;
    el.pauseHidden.checked = settings.pauseHidden;
    el.pauseBattery.checked = settings.pauseBattery;
    el.threshold.value = String(settings.batteryThreshold);
  };

  el.intensity.addEventListener('input', () => {
    settings.intensity = clamp(el.intensity.value, 10, 100, settings.intensity);
    el.intensityValue.textContent = `${settings.intensity}%`;
    save();
    changed();
  });
  el.pauseHidden.addEventListener('change', () => {
    settings.pauseHidden = el.pauseHidden.checked;
    save();
    changed();
  });
  el.pauseBattery.addEventListener('change', () => {
    settings.pauseBattery = el.pauseBattery.checked;
    save();
    changed();
  });
  el.threshold.addEventListener('change', () => {
    settings.batteryThreshold = clamp(el.threshold.value, 5, 100, settings.batteryThreshold);
    draw();
    save();
    changed();
  });
  document.addEventListener('visibilitychange', changed);

  if (typeof navigator.getBattery === 'function') {
    navigator.getBattery().then((b) => {
      battery = b;
      b.addEventListener('levelchange', changed);
      b.addEventListener('chargingchange', changed);
      changed();
    }, () => {
      el.batteryNote.textContent = '(this browser does not tell the battery level)';
    });
  } else {
    el.batteryNote.textContent = '(this browser does not tell the battery level)';
  }

  draw();
  last = JSON.stringify(current());
  return { current };
}

/** The words for a pause reason. */
export function pauseText(reason) {
  if (reason === 'hidden') return 'Paused while this tab is hidden';
  if (reason === 'battery') return 'Paused: on battery below your threshold';
  return 'Paused';
}
