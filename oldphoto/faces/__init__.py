"""The optional face-enhancement stage (``pip install ".[faces]"`` from a clone).

``enhance_faces(image, generator, ...)`` is the whole stage; ``faces_available()`` says whether
the extra is installed and ``FacesUnavailable`` is the one-line error that says what to install.
dlib and torch are imported only when a face is actually detected or generated.
"""

from oldphoto.faces.availability import INSTALL_HINT, FacesUnavailable, faces_available, landmark_model_path
from oldphoto.faces.stage import FaceRecord, enhance_faces

__all__ = ["INSTALL_HINT", "FaceRecord", "FacesUnavailable", "enhance_faces", "faces_available", "landmark_model_path"]
