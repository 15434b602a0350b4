# Drops the (state, lock_expires) index: a heartbeat then writes no index (a HOT update
# on PostgreSQL); the monitor finds the few Executing jobs through (state, created).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('celery_bgp', '0004_daemons'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='job',
            name='bgp_job_lock_expires',
        ),
    ]
