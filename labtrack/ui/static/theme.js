// Loaded in <head>, before the page paints: the theme the toggle chose (else the system's) without a flash.
(function () {
  try {
    var chosen = localStorage.getItem("labtrack-theme");
    if (chosen === "dark" || chosen === "light") document.documentElement.dataset.theme = chosen;
  } catch (e) { /* storage refused: follow the system */ }
})();
