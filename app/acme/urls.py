from django.contrib import admin
from django.urls import path

from core import views as core_views
from images import views as image_views
from inventory import views as inventory_views
from orders import views as order_views

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("livez", core_views.livez, name="livez"),
    path("api/tasks/", core_views.submit_task, name="task-submit"),
    path("api/tasks/<str:task_id>/", core_views.task_status, name="task-status"),
    path("api/orders/", order_views.create_order, name="order-create"),
    path("api/uploads/", image_views.create_upload, name="upload-create"),
    path("api/uploads/<int:upload_id>/", image_views.upload_detail, name="upload-detail"),
    path("api/inventory/sync-runs/", inventory_views.sync_runs, name="inventory-sync-runs"),
    path("admin/", admin.site.urls),
]
