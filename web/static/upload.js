// Drag and drop onto the upload box: the dropped file goes into the form's file picker, which
// stays the way to choose a file with the keyboard (no script needed for it).
document.addEventListener("DOMContentLoaded", function () {
  var box = document.getElementById("dropbox");
  var input = document.getElementById("file");
  if (!box || !input) return;
  ["dragenter", "dragover"].forEach(function (name) {
    box.addEventListener(name, function (event) {
      event.preventDefault();
      box.classList.add("dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    box.addEventListener(name, function () { box.classList.remove("dragging"); });
  });
  box.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
    }
  });
});
